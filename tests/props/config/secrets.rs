//! Target: secrets stay secret. Secret-typed values filled from `${SECRET}` never show up
//! in an error or in the settings' `Debug`.

use proptest::prelude::*;

use super::{
    Env, Tally, check_load,
    schema::{Doc, junk, style_strategy},
};
use crate::harness::fuzz;

/// Secret-typed values (`env`, `headers`, `oauth.client_secret`) filled from `${SECRET}`
/// never appear in an error message or in the settings' `Debug`, whatever else is wrong;
/// nor does a `url` that a variable made invalid.
#[test]
fn config_secrets_stay_secret() {
    let secret = prop_oneof![
        "[A-Za-z0-9]{12}".prop_map(|tail| format!("SeCrEt{tail}")),
        "[A-Za-z0-9]{8}".prop_map(|tail| format!("SeCrEt{tail}\r\nX-Injected: 1")),
        "[A-Za-z0-9]{8}".prop_map(|tail| format!("SeCrEt{tail}\0")),
    ];
    let env_name = prop_oneof![4 => Just("KEY"), 1 => Just(""), 1 => Just("A=B")];
    let url = prop_oneof![
        4 => Just("https://example.com/mcp"),
        1 => Just("ht tp://example.com/?key=${SECRET}"),
        1 => Just("ftp://example.com/${SECRET}"),
    ];
    let server = (any::<bool>(), any::<bool>(), env_name, prop::option::weighted(0.3, junk()), url);
    let strategy = (secret, prop::collection::vec(server, 1..3), style_strategy());
    let tally = Tally::default();
    fuzz("config-secrets", strategy, |(secret, servers, style)| {
        let mut members = Vec::new();
        for (index, (remote, oauth, name, extra, url)) in servers.into_iter().enumerate() {
            let reference = || Doc::String("${SECRET}".to_owned());
            let text = |text: &str| Doc::String(text.to_owned());
            let mut server = if remote {
                vec![
                    ("url".to_owned(), text(url)),
                    ("headers".to_owned(), Doc::Object(vec![(format!("X-{name}"), reference())])),
                ]
            } else {
                vec![
                    ("command".to_owned(), text("npx")),
                    ("env".to_owned(), Doc::Object(vec![(name.to_owned(), reference())])),
                ]
            };
            if oauth {
                server
                    .push(("oauth".to_owned(), Doc::Object(vec![("client_secret".to_owned(), reference())])));
            }
            server.extend(extra.map(|extra| ("timeout".to_owned(), extra)));
            members.push((format!("s{index}"), Doc::Object(server)));
        }
        let document = Doc::Object(vec![("mcpServers".to_owned(), Doc::Object(members))]);
        let text = document.render(&style);
        let env: Env = [("SECRET".to_owned(), secret.clone())].into();
        let shown = match check_load(&text, &env, &tally)? {
            Ok(settings) => format!("{settings:?}"),
            Err(error) => format!("{error}\n{error:?}"),
        };
        let needle: String = secret.chars().take_while(char::is_ascii_alphanumeric).collect();
        prop_assert!(!shown.contains(&needle), "the secret is shown:\n{shown}");
        Ok(())
    });
    tally.report("config-secrets");
}
