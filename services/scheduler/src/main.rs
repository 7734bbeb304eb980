//! postflow-scheduler: flow runs and durable timers.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: scheduler::Settings = kit::settings::load()?;
    let telemetry = telemetry::init("scheduler", &settings.telemetry)?;
    let app = scheduler::Application::build(settings).await?;
    let result = app.run_until_stopped(kit::shutdown_signal()).await;
    telemetry.shutdown();
    result
}
