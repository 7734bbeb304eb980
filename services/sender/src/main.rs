//! postflow-sender: exactly-once delivery.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One TLS provider for the whole process (ring); two would make TLS connects panic.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings: sender::Settings = kit::settings::load()?;
    let telemetry = telemetry::init("sender", &settings.telemetry)?;
    let app = sender::Application::build(settings).await?;
    let result = app.run_until_stopped(kit::shutdown_signal()).await;
    telemetry.shutdown();
    result
}
