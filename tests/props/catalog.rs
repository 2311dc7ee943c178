//! Fuzz target: the merged catalog (`proxy::Catalog::build`) over 1–4 upstreams with
//! clashing, odd and adversarial tool names and resource URIs, under every
//! `conflictResolution` policy.
//!
//! The settings come from `config::load_str` of a generated config, the upstream view is
//! built from the public `upstream::{View, UpstreamState, UpstreamCatalog}`. Each listed
//! item carries `<upstream>\0<original>` (tool description, resource name) so the test can
//! tell where every exposed item came from and check that its route leads back there.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    path::Path,
    sync::{Arc, LazyLock},
};

use foxxy_bridge::{
    config::{self, ConflictResolution, Settings},
    proxy::{
        Catalog,
        catalog::Naming,
        naming::{exposed_name, is_valid_name, namespaced_uri, uri_namespace, with_hash_suffix},
    },
    upstream::{Status, UpstreamCatalog, UpstreamState, View},
};
use proptest::prelude::*;
use rmcp::model::{Resource, ResourceTemplate, ServerCapabilities, Tool};
use serde_json::json;

use crate::{harness::fuzz, naming::tool_name};

/// Server names: some sanitize to the same namespace (`a.b`/`a_b`), some to the same URI
/// host (`a`/`A`).
const SERVERS: &[&str] = &["a", "b", "u", "w", "A", "a.b", "a_b"];
/// Tool names that clash once namespaced.
const BASE_TOOLS: &[&str] = &["t", "x", "a.b", "a_b", "t-1", "ünï", ""];
const URIS: &[&str] = &["file:///x", "file:///y", "mem://a", "", "foxxy://"];
/// `mem://{k}` and `mem://{j}` share a literal prefix, which completions route by.
const TEMPLATES: &[&str] = &["file:///{path}", "file:///x/{id}", "mem://{k}", "mem://{j}", "{all}"];
const POLICIES: &[&str] = &["namespace", "priority", "first", "error"];

/// Tool names an upstream might list to collide with what the bridge makes of another
/// upstream's names: `<server>__<tool>` (the fuzzer's dictionary, like libFuzzer's
/// comparison operands), and the hash-suffixed forms clash resolution makes of them.
fn dictionary() -> &'static [String] {
    static WORDS: LazyLock<Vec<String>> = LazyLock::new(|| {
        let mut words = BTreeSet::new();
        for server in SERVERS {
            for tool in BASE_TOOLS {
                let exposed = exposed_name(Some(server), tool);
                words.insert(with_hash_suffix(&exposed, &format!("{server}\0{tool}")));
                words.insert(exposed);
            }
        }
        words.into_iter().collect()
    });
    &WORDS
}

fn catalog_tool_name() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => prop::sample::select(BASE_TOOLS).prop_map(str::to_owned),
        3 => prop::sample::select(dictionary()),
        1 => prop::sample::select(vec!["l".repeat(70), format!("{}x", "l".repeat(70))]),
        1 => tool_name(),
    ]
}

fn uri() -> impl Strategy<Value = String> {
    // URIs in the bridge's own namespaced form (`foxxy://a/...`), as if an upstream
    // tried to pass for another.
    let bridged: Vec<String> = (SERVERS.iter())
        .flat_map(|server| URIS.iter().map(move |uri| namespaced_uri(&uri_namespace(server), uri)))
        .collect();
    prop_oneof![
        4 => prop::sample::select(URIS).prop_map(str::to_owned),
        2 => prop::sample::select(bridged),
        1 => any::<String>(),
    ]
}

#[derive(Debug, Clone)]
struct Upstream {
    name: String,
    tool_namespace: Option<String>,
    resource_namespace: Option<String>,
    priority: i64,
    deny: Option<String>,
    ready: bool,
    serves_resources: bool,
    tools: Vec<String>,
    uris: Vec<String>,
    templates: Vec<String>,
}

#[derive(Debug, Clone)]
struct Scenario {
    policy: &'static str,
    default_namespace: bool,
    aggregate_tools: bool,
    upstreams: Vec<Upstream>,
}

fn upstream(name: &'static str) -> impl Strategy<Value = Upstream> {
    let namespace = prop::option::weighted(0.3, prop::sample::select(&["n", "a", "u", "a_b"][..]));
    let resource_namespace = prop::option::weighted(0.2, prop::sample::select(&["r", "a", "A"][..]));
    let deny = prop::option::weighted(0.15, prop::sample::select(&["t*", "*", "a?b", "[!t]"][..]));
    (
        (namespace, resource_namespace, prop::sample::select(&[0i64, 1, 100, -5][..]), deny),
        (prop::bool::weighted(0.85), prop::bool::weighted(0.8)),
        prop::collection::vec(catalog_tool_name(), 0..5),
        prop::collection::vec(uri(), 0..4),
        prop::collection::vec(prop::sample::select(TEMPLATES).prop_map(str::to_owned), 0..2),
    )
        .prop_map(
            move |(
                (namespace, resource_namespace, priority, deny),
                (ready, serves_resources),
                tools,
                uris,
                templates,
            )| {
                Upstream {
                    name: name.to_owned(),
                    tool_namespace: namespace.map(str::to_owned),
                    resource_namespace: resource_namespace.map(str::to_owned),
                    priority,
                    deny: deny.map(str::to_owned),
                    ready,
                    serves_resources,
                    tools,
                    uris,
                    templates,
                }
            },
        )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let names = prop::sample::subsequence(SERVERS, 1..=4).prop_shuffle();
    let upstreams = names.prop_flat_map(|names| names.into_iter().map(upstream).collect::<Vec<_>>());
    (prop::sample::select(POLICIES), any::<bool>(), prop::bool::weighted(0.95), upstreams).prop_map(
        |(policy, default_namespace, aggregate_tools, upstreams)| Scenario {
            policy,
            default_namespace,
            aggregate_tools,
            upstreams,
        },
    )
}

fn settings(scenario: &Scenario) -> Settings {
    let mut servers = serde_json::Map::new();
    for upstream in &scenario.upstreams {
        let mut server = json!({ "command": "x", "priority": upstream.priority });
        if let Some(namespace) = &upstream.tool_namespace {
            server["toolNamespace"] = json!(namespace);
        }
        if let Some(namespace) = &upstream.resource_namespace {
            server["resourceNamespace"] = json!(namespace);
        }
        if let Some(deny) = &upstream.deny {
            server["toolFilter"] = json!({ "deny": [deny] });
        }
        servers.insert(upstream.name.clone(), server);
    }
    let document = json!({
        "mcpServers": servers,
        "bridge": {
            "conflictResolution": scenario.policy,
            "defaultNamespace": scenario.default_namespace,
            "aggregation": { "tools": scenario.aggregate_tools },
        },
    });
    config::load_str(&document.to_string(), Path::new("/fuzz/catalog.json5"), &|_| None)
        .unwrap_or_else(|error| panic!("the generated config is valid: {error}"))
}

fn tag(upstream: &str, original: &str) -> String {
    format!("{upstream}\0{original}")
}

fn view(scenario: &Scenario) -> View {
    let upstreams = scenario
        .upstreams
        .iter()
        .map(|upstream| {
            let mut capabilities = ServerCapabilities::builder().enable_tools().build();
            if upstream.serves_resources {
                capabilities.resources = ServerCapabilities::builder().enable_resources().build().resources;
            }
            let catalog = UpstreamCatalog {
                capabilities,
                tools: (upstream.tools.iter())
                    .map(|name| {
                        Tool::new(name.clone(), tag(&upstream.name, name), Arc::new(Default::default()))
                    })
                    .collect(),
                resources: (upstream.uris.iter())
                    .map(|uri| Resource::new(uri.clone(), tag(&upstream.name, uri)))
                    .collect(),
                resource_templates: (upstream.templates.iter())
                    .map(|template| ResourceTemplate::new(template.clone(), tag(&upstream.name, template)))
                    .collect(),
                ..UpstreamCatalog::default()
            };
            UpstreamState {
                name: upstream.name.as_str().into(),
                transport: "stdio",
                status: if upstream.ready { Status::Ready } else { Status::Failed("down".to_owned()) },
                settled: true,
                catalog: Some(Arc::new(catalog)),
                generation: 0,
                note: None,
                pid: None,
            }
        })
        .collect();
    View { upstreams }
}

/// What the documented policy keeps: (upstream, original) of every exposed tool, and
/// whether some name is offered by several upstreams.
fn expected_tools(scenario: &Scenario, settings: &Settings) -> (BTreeSet<(String, String)>, bool) {
    struct Candidate<'a> {
        order: usize,
        upstream: &'a str,
        priority: i64,
        original: &'a str,
    }
    let mut groups: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for (order, upstream) in scenario.upstreams.iter().enumerate() {
        let server = settings.server(&upstream.name).expect("every upstream is configured");
        if !upstream.ready || !scenario.aggregate_tools {
            continue;
        }
        let namespace = server
            .tool_namespace
            .clone()
            .or_else(|| scenario.default_namespace.then(|| upstream.name.clone()));
        for tool in &upstream.tools {
            if !server.tool_filter.allows(tool) {
                continue;
            }
            let group = groups.entry(exposed_name(namespace.as_deref(), tool)).or_default();
            if !group.iter().any(|other| other.upstream == upstream.name && other.original == tool) {
                group.push(Candidate {
                    order,
                    upstream: &upstream.name,
                    priority: upstream.priority,
                    original: tool,
                });
            }
        }
    }
    let mut kept = BTreeSet::new();
    let mut clash = false;
    for group in groups.values() {
        let across = group.iter().any(|candidate| candidate.upstream != group[0].upstream);
        clash |= across;
        let winners: Vec<&Candidate> = match scenario.policy {
            _ if !across => group.iter().collect(),
            "namespace" => group.iter().collect(),
            "first" => group.iter().min_by_key(|candidate| candidate.order).into_iter().collect(),
            "priority" => group
                .iter()
                .min_by_key(|candidate| (candidate.priority, candidate.order))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        kept.extend(
            winners
                .into_iter()
                .map(|candidate| (candidate.upstream.to_owned(), candidate.original.to_owned())),
        );
    }
    (kept, clash)
}

fn check_tools(scenario: &Scenario, settings: &Settings, catalog: &Catalog) -> Result<(), TestCaseError> {
    prop_assert_eq!(catalog.tools.len(), catalog.tool_upstreams.len());
    let mut seen = HashSet::new();
    let mut exposed = BTreeSet::new();
    for (tool, upstream) in catalog.tools.iter().zip(&catalog.tool_upstreams) {
        let name = tool.name.as_ref();
        prop_assert!(is_valid_name(name), "invalid exposed name {name:?}");
        prop_assert!(seen.insert(name.to_owned()), "exposed tool name {name:?} is listed twice");
        let route =
            catalog.tool(name).ok_or_else(|| TestCaseError::fail(format!("{name:?} has no route")))?;
        prop_assert_eq!(
            &route.upstream,
            upstream,
            "{:?} routes to another upstream than it is listed for",
            name
        );
        let from = tool.description.as_deref().unwrap_or_default();
        prop_assert_eq!(
            from,
            tag(&route.upstream, &route.name),
            "exposed tool {:?} routes to `{}`/{:?}, but it is the tool of another upstream",
            name,
            route.upstream,
            route.name
        );
        let listed = scenario.upstreams.iter().find(|candidate| *candidate.name == *route.upstream);
        prop_assert!(listed.is_some_and(|listed| listed.ready && listed.tools.contains(&route.name)));
        exposed.insert((route.upstream.to_string(), route.name.clone()));
    }
    let (kept, clash) = expected_tools(scenario, settings);
    prop_assert_eq!(&exposed, &kept, "exposed tools differ from what policy `{}` keeps", scenario.policy);
    if scenario.policy == "error" {
        prop_assert_eq!(!catalog.conflicts.is_empty(), clash, "conflicts: {:?}", catalog.conflicts);
    } else {
        prop_assert!(catalog.conflicts.is_empty());
    }
    // A tool of an upstream that is down still routes to an upstream that listed it.
    for upstream in scenario.upstreams.iter().filter(|upstream| !upstream.ready) {
        let server = settings.server(&upstream.name).expect("every upstream is configured");
        let namespace = server
            .tool_namespace
            .clone()
            .or_else(|| scenario.default_namespace.then(|| upstream.name.clone()));
        for tool in
            upstream.tools.iter().filter(|tool| scenario.aggregate_tools && server.tool_filter.allows(tool))
        {
            let name = exposed_name(namespace.as_deref(), tool);
            let route =
                catalog.tool(&name).ok_or_else(|| TestCaseError::fail(format!("no route for {name:?}")))?;
            let owner = scenario.upstreams.iter().find(|candidate| *candidate.name == *route.upstream);
            prop_assert!(
                owner.is_some_and(|owner| owner.tools.contains(&route.name)),
                "{name:?} → {route:?}"
            );
        }
    }
    Ok(())
}

fn check_resources(scenario: &Scenario, catalog: &Catalog) -> Result<(), TestCaseError> {
    let mut seen = HashSet::new();
    for resource in &catalog.resources {
        prop_assert!(
            seen.insert(resource.uri.clone()),
            "exposed resource URI {:?} is listed twice",
            resource.uri
        );
        let route = catalog
            .resource(&resource.uri)
            .ok_or_else(|| TestCaseError::fail(format!("{:?} has no route", resource.uri)))?;
        prop_assert_eq!(
            &resource.name,
            &tag(&route.upstream, &route.name),
            "reading {:?} goes to `{}`/{:?}, but the resource is another upstream's",
            resource.uri,
            route.upstream,
            route.name
        );
    }
    let listed: usize = (scenario.upstreams.iter())
        .filter(|upstream| upstream.ready && upstream.serves_resources)
        .map(|upstream| upstream.uris.iter().collect::<BTreeSet<_>>().len())
        .sum();
    prop_assert_eq!(catalog.resources.len(), listed, "a listed resource went missing");
    for template in &catalog.resource_templates {
        if let Some(route) = catalog.template(&template.uri_template) {
            prop_assert_eq!(
                &template.name,
                &tag(&route.upstream, &route.name),
                "completing {:?} goes to `{}`/{:?}, but the template is another upstream's",
                template.uri_template,
                route.upstream,
                route.name
            );
        }
    }
    Ok(())
}

#[test]
fn catalog_merge() {
    fuzz("catalog", scenario(), |scenario| {
        let settings = settings(&scenario);
        let view = view(&scenario);
        let catalog = Catalog::build(&view, &settings, Naming::Exposed);
        let again = Catalog::build(&view, &settings, Naming::Exposed);
        let names =
            |catalog: &Catalog| catalog.tools.iter().map(|tool| tool.name.to_string()).collect::<Vec<_>>();
        prop_assert_eq!(names(&catalog), names(&again), "not deterministic");
        prop_assert_eq!(
            settings.bridge.conflict_resolution == ConflictResolution::Error,
            scenario.policy == "error"
        );
        check_tools(&scenario, &settings, &catalog)?;
        check_resources(&scenario, &catalog)?;
        Ok(())
    });
}
