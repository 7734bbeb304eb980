//! postflow-tracker: opens, clicks and unsubscribes.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: tracker::Settings = kit::settings::load()?;
    let telemetry = telemetry::init("tracker", &settings.telemetry)?;
    let app = tracker::Application::build(settings).await?;
    let result = app.run_until_stopped(kit::shutdown_signal()).await;
    telemetry.shutdown();
    result
}
