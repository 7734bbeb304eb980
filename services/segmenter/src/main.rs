//! postflow-segmenter: customer profiles and consent.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: segmenter::Settings = kit::settings::load()?;
    let telemetry = telemetry::init("segmenter", &settings.telemetry)?;
    let app = segmenter::Application::build(settings).await?;
    let result = app.run_until_stopped(kit::shutdown_signal()).await;
    telemetry.shutdown();
    result
}
