//! postflow-ingest: the webhook edge.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: ingest::Settings = kit::settings::load()?;
    let telemetry = telemetry::init("ingest", &settings.telemetry)?;
    let app = ingest::Application::build(settings).await?;
    let result = app.run_until_stopped(kit::shutdown_signal()).await;
    telemetry.shutdown();
    result
}
