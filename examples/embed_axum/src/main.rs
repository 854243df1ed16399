//! Run with:
//! ```sh
//! cargo run -p embed_axum            # PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test)
//! curl -s -XPOST localhost:3000/signup -H 'content-type: application/json' -d '{"username":"alice","password":"correct horse"}'
//! curl -s -XPOST localhost:3000/login  -H 'content-type: application/json' -d '{"username":"alice","password":"correct horse"}'
//! # → {"user_id":1,"token":"…"}: the same token opens ws://localhost:3000/chat/ws?token=…
//! curl -s -H "Authorization: Bearer <token>" localhost:3000/chat/api/v1/conversations
//! ```

use std::net::SocketAddr;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Err(e) = run().await {
        eprintln!("embed_axum: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let listen: SocketAddr = std::env::var("LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()
        .map_err(|e| format!("LISTEN: {e}"))?;
    let app = embed_axum::app(&url).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("the application is on http://{listen}/, chat under http://{listen}/chat/");
    axum::serve(
        listener,
        app.router
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| e.to_string())?;
    app.node.shutdown().await;
    Ok(())
}
