//! Two users chat through a running server: both register, log in and
//! connect; alice sends bob a message and bob prints the push.
//!
//! Run with:
//! ```text
//! cargo run -p quickstart                                        # terminal 1: the server
//! cargo run -p im-client --example chat -- http://127.0.0.1:8080 # terminal 2
//! ```
//! The usernames get a random suffix, so the example can run again against
//! the same server.

use std::time::Duration;

use im_client::im_core::model::Target;
use im_client::{ClientError, ImClient};

const PASSWORD: &str = "password123";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let api = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let suffix = std::process::id();
    let (alice_name, bob_name) = (format!("alice{suffix}"), format!("bob{suffix}"));

    ImClient::register(&api, &alice_name, PASSWORD)
        .await
        .map_err(|e| hint(&api, e))?;
    ImClient::register(&api, &bob_name, PASSWORD).await?;
    let alice = ImClient::login(&api, &alice_name, PASSWORD).await?;
    let bob = ImClient::login(&api, &bob_name, PASSWORD).await?;
    println!(
        "{alice_name} is user {}, {bob_name} is user {}",
        alice.user_id, bob.user_id
    );

    let mut alice_conn = alice.connect().await?;
    let mut bob_conn = bob.connect().await?;

    let ack = alice_conn
        .send(Target::User(bob.user_id), format!("hello {bob_name}!"))
        .await?;
    println!(
        "{alice_name} sent message {} (seq {} of {})",
        ack.msg_id, ack.seq, ack.conversation_id
    );

    match tokio::time::timeout(Duration::from_secs(10), bob_conn.next_message()).await {
        Ok(Some(m)) => println!("{bob_name} got #{} from user {}: {}", m.seq, m.from, m.body),
        Ok(None) => return Err("bob's connection ended before the push".into()),
        Err(_) => return Err("no push to bob within 10 s".into()),
    }

    alice_conn.close().await;
    bob_conn.close().await;
    Ok(())
}

/// The first call failing is most likely a server that is not running.
fn hint(api: &str, e: ClientError) -> Box<dyn std::error::Error> {
    match e {
        ClientError::Http(e) => {
            format!("cannot reach {api} ({e}); start the server first: cargo run -p quickstart")
                .into()
        }
        other => other.into(),
    }
}
