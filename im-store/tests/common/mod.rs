//! What the SQL store tests (`mysql.rs`, `postgres.rs`, `sqlite.rs`) share:
//! URL rewriting and one test per conformance suite of the six stores.
#![allow(dead_code)]

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// One `#[tokio::test]` per conformance suite of `im_core::testkit` for the
/// six SQL stores (messages, users, groups, conversations, contacts,
/// devices, in that order of names), each on the store that
/// `$fresh(|s| async move { … })` hands out (a fresh database or file).
macro_rules! sql_conformance {
    ($fresh:ident: $messages:ident, $users:ident, $groups:ident, $conversations:ident,
     $contacts:ident, $devices:ident) => {
        sql_conformance!(@one $fresh, $messages, message_suite, messages);
        sql_conformance!(@one $fresh, $users, user_suite, users);
        sql_conformance!(@one $fresh, $groups, group_suite, groups);
        sql_conformance!(@one $fresh, $contacts, contacts_suite, contacts);
        sql_conformance!(@one $fresh, $devices, device_suite, devices);

        #[tokio::test]
        async fn $conversations() {
            $fresh(|s| async move {
                im_core::testkit::conversations_suite(|| async {
                    (
                        std::sync::Arc::new(s.conversations()) as _,
                        std::sync::Arc::new(s.messages()) as _,
                    )
                })
                .await;
            })
            .await;
        }
    };
    (@one $fresh:ident, $name:ident, $suite:ident, $store:ident) => {
        #[tokio::test]
        async fn $name() {
            $fresh(|s| async move {
                im_core::testkit::$suite(|| async { std::sync::Arc::new(s.$store()) as _ }).await;
            })
            .await;
        }
    };
}
