//! postflow-renderer: templates into messages.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: renderer::Settings = kit::settings::load()?;
    let telemetry = telemetry::init("renderer", &settings.telemetry)?;
    let app = renderer::Application::build(settings).await?;
    let result = app.run_until_stopped(kit::shutdown_signal()).await;
    telemetry.shutdown();
    result
}
