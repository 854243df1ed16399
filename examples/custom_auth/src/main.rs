//! # custom_auth: im with your own authenticator and a store decorator
//!
//! Run with:
//! ```sh
//! export IM_AUTH_SECRET=0123456789abcdef0123456789abcdef   # shared with "your" identity system
//! cargo run -p custom_auth                                  # serve on http://127.0.0.1:8080
//! cargo run -p custom_auth -- mint-token 1001               # print a token for user 1001
//! cargo run -p custom_auth -- --help                        # every option
//! ```
//!
//! Then, with a token per user:
//! ```sh
//! A=$(cargo run -q -p custom_auth -- mint-token 1001)
//! B=$(cargo run -q -p custom_auth -- mint-token 1002)
//! curl -s -H "Authorization: Bearer $B" localhost:8080/api/v1/connect   # first use provisions 1002
//! curl -s -H "Authorization: Bearer $A" -H 'content-type: application/json' \
//!      -d '{"client_msg_id":"c1","to":{"user":"1002"},"body":"hi"}' localhost:8080/api/v1/messages
//! ```
//! `mint-token` also prints (on stderr) a line to paste into the browser
//! console of the web page at `/` to sign in with the token.
//!
//! Like the quickstart, all four layers run in this process on the in-memory
//! backends, with two parts replaced (see `src/lib.rs`):
//! - tokens are `user_id.expiry_unix_ms.hmac_sha256_hex`, verified by
//!   `HmacTokenAuthenticator`, which issues none: a password login
//!   (`POST /api/v1/sessions`) answers 403 `permission_denied`. A valid token
//!   of an unknown user creates its account on first use, so that others can
//!   send to it (a user nobody has seen yet is 404 `not_found` as a peer).
//! - the archive is an `AuditingMessageStore` wrapping the memory store; it
//!   logs every archived batch and prints its totals on shutdown.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use custom_auth::token::HmacTokenAuthenticator;
use im_core::id::{now_ms, UserId};
use im_transport::app::AppBuilder;
use im_transport::server::serve;
use tokio_util::sync::CancellationToken;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "custom_auth",
    about = "Run im in one process with a custom Authenticator (HMAC tokens) and an auditing MessageStore"
)]
struct Args {
    /// The secret shared with your identity system (at least 32 bytes).
    #[arg(long, env = "IM_AUTH_SECRET", hide_env_values = true, global = true)]
    secret: Option<String>,
    /// Address to listen on (HTTP API, /ws and the web page).
    #[arg(long, env = "IM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Public WebSocket URL answered by GET /api/v1/connect (default: from the Host header).
    #[arg(long, env = "IM_PUBLIC_WS_URL")]
    public_ws_url: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a token for a user id (what your identity system would issue).
    MintToken {
        /// The user id (a decimal number, e.g. 1001).
        user_id: UserId,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl_secs: u32,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match secret(&args) {
        Err(e) => Err(e),
        Ok(secret) => match args.command {
            Some(Command::MintToken { user_id, ttl_secs }) => {
                mint(&secret, user_id, ttl_secs).map_err(|e| e.to_string())
            }
            None => run(&secret, args.listen, args.public_ws_url).await,
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_auth: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn secret(args: &Args) -> Result<Vec<u8>, String> {
    match &args.secret {
        Some(s) if s.len() >= 32 => Ok(s.as_bytes().to_vec()),
        Some(_) => Err("the secret must be at least 32 bytes".into()),
        None => Err(
            "set --secret or IM_AUTH_SECRET (at least 32 bytes), the same for the server and mint-token"
                .into(),
        ),
    }
}

/// Prints a token on stdout, and how to use it on stderr.
fn mint(secret: &[u8], user: UserId, ttl_secs: u32) -> im_core::Result<()> {
    let expires_at = now_ms().saturating_add(i64::from(ttl_secs) * 1000);
    let token = HmacTokenAuthenticator::new(secret).mint(user, expires_at)?;
    println!("{token}");
    eprintln!(
        "\nUse it as `Authorization: Bearer <token>` or `/ws?token=<token>`.\n\
         To sign in on the web page, paste this into its browser console:\n\
         sessionStorage.setItem(\"im.session\", JSON.stringify({{name: \"user {user}\", user_id: \"{user}\", \
         token: \"{token}\", expires_at: {expires_at}}})); location.reload()"
    );
    Ok(())
}

async fn run(
    secret: &[u8],
    listen: SocketAddr,
    public_ws_url: Option<String>,
) -> Result<(), String> {
    let (builder, audited) = custom_auth::builder(secret);
    let node = builder.start().await.map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();
    let mut app = AppBuilder::for_node(&node)
        .with_web_page(true)
        .with_shutdown(shutdown.clone());
    if let Some(url) = public_ws_url {
        app = app.with_public_ws_url(url);
    }
    let router = app.build();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "im custom_auth is running on http://{addr}/ — get a token with \
         `cargo run -p custom_auth -- mint-token <user_id>` (password login is disabled)"
    );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    serve(listener, router, shutdown)
        .await
        .map_err(|e| e.to_string())?;
    node.shutdown().await;
    let s = audited.stats();
    println!(
        "audit: {} messages archived in {} batches ({} offered, {} failed appends)",
        s.stored, s.batches, s.offered, s.failures
    );
    Ok(())
}
