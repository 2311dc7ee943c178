//! The merged catalog: every ready upstream's tools, prompts, resources and templates
//! under their exposed names, and the routes that map each exposed name back to its
//! upstream and original name.
//!
//! A [`Catalog`] is an immutable value rebuilt from the upstream [`View`] whenever it
//! changes, so the request path only ever reads an `Arc<Catalog>`: no locks, no
//! re-listing of upstreams per call.
//!
//! `Catalog::build` takes the tools and prompts of ready upstreams, applies each server's
//! `toolFilter` and `bridge.aggregation`, names them (`naming.rs`), and resolves clashes by
//! `bridge.conflictResolution`; resources and templates are namespaced when needed. The
//! result holds the lists the client sees and the routes back ([`Route`]: upstream and
//! original name). Tools of an upstream that is down are kept as routes only, so a call of
//! one can name the upstream and its cause. An upstream waiting for a sign-in adds its
//! placeholder tool (`sign_in_candidate`, `proxy/sign_in.rs`).

pub mod search;

use std::sync::Arc;

// foldhash: the tool routes are looked up on every call.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use rmcp::model::{JsonObject, Prompt, Resource, ResourceTemplate, Tool};

use super::naming::{self, exposed_name, uri_namespace, with_hash_suffix};
use crate::{
    config::{ConflictResolution, Settings},
    upstream::{Status, UpstreamState, View},
};

/// Where an exposed name leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub upstream: Arc<str>,
    /// The upstream's own name (or URI).
    pub name: String,
}

/// One upstream's status, for `tools` and the log.
#[derive(Debug, Clone)]
pub struct UpstreamStatus {
    pub name: Arc<str>,
    pub transport: &'static str,
    pub status: Status,
    /// While connecting: what may be why it does not finish (`UpstreamState::note`).
    pub note: Option<String>,
}

impl UpstreamStatus {
    /// The error of a failed upstream, else the note of one still connecting.
    pub fn problem(&self) -> Option<&str> {
        self.status.error().or(self.note.as_deref())
    }
}

#[derive(Debug, Default)]
pub struct Catalog {
    pub tools: Vec<Tool>,
    /// Each of `tools` as its upstream wrote it, under its exposed name: what
    /// `tools/list` serves. Parallel to `tools`.
    pub tool_objects: Vec<Arc<JsonObject>>,
    /// The upstream of each exposed tool, parallel to `tools`.
    pub tool_upstreams: Vec<Arc<str>>,
    tool_routes: HashMap<String, Route>,
    /// Exposed names of tools whose upstream is down, so a call can name it.
    unavailable_tools: HashMap<String, Route>,
    pub prompts: Vec<Prompt>,
    prompt_routes: HashMap<String, Route>,
    pub resources: Vec<Resource>,
    resource_routes: HashMap<String, Route>,
    pub resource_templates: Vec<ResourceTemplate>,
    /// (literal prefix, upstream, template) of the templates exposed as they are.
    template_routes: Vec<(String, Arc<str>, String)>,
    /// URI namespace host → upstream, and back.
    uri_hosts: HashMap<String, Arc<str>>,
    upstream_hosts: HashMap<Arc<str>, String>,
    /// Upstreams whose every URI is namespaced (`resourceNamespace`).
    namespaced_upstreams: HashSet<Arc<str>>,
    /// Single URIs namespaced because several upstreams list them.
    namespaced_uris: HashSet<(Arc<str>, String)>,
    /// Ready upstreams that serve resources, for URIs no list mentions.
    resource_upstreams: Vec<Arc<str>>,
    /// Name clashes under `conflictResolution: error`, as messages.
    pub conflicts: Vec<String>,
    pub statuses: Vec<UpstreamStatus>,
    /// Every upstream has finished its first connection attempt.
    pub all_settled: bool,
    /// The search index and listed tools in search mode (`None` in all mode); set by the
    /// catalog task after `build`.
    pub search: Option<Arc<search::SearchMode>>,
}

/// How a catalog names the tools and prompts of its upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Namespaced as configured and made valid for clients (`naming.rs`).
    Exposed,
    /// As the upstream wrote them: for a bridge that serves one upstream as that server
    /// itself, whose client (the bridge on the other side of the hub) makes the exposed
    /// names, as for an unshared upstream.
    AsWritten,
}

/// A name offered by an upstream, before clash resolution.
struct Candidate<T> {
    order: usize,
    upstream: Arc<str>,
    priority: i64,
    original: String,
    namespaced: bool,
    exposed: String,
    item: T,
}

impl Catalog {
    /// The catalog of the upstreams in `view` as `settings` configure them, named by
    /// `naming`.
    pub fn build(view: &View, settings: &Settings, naming: Naming) -> Catalog {
        let mut catalog = Catalog {
            all_settled: view.all_settled(),
            statuses: view
                .upstreams
                .iter()
                .map(|state| UpstreamStatus {
                    name: state.name.clone(),
                    transport: state.transport,
                    status: state.status.clone(),
                    note: state.note.clone().filter(|_| state.status == Status::Connecting),
                })
                .collect(),
            ..Catalog::default()
        };
        let bridge = &settings.bridge;
        let exposed = |namespace: Option<&str>, name: &str| match naming {
            Naming::AsWritten => name.to_owned(),
            Naming::Exposed => exposed_name(namespace, name),
        };
        let mut tools = Vec::new();
        let mut prompts = Vec::new();
        for (order, state) in view.upstreams.iter().enumerate() {
            tools.extend(sign_in_candidate(order, state, settings));
            let (Some(server), Some(upstream_catalog)) = (settings.server(&state.name), &state.catalog)
            else {
                continue;
            };
            let namespace = |configured: &Option<String>| {
                configured.clone().or_else(|| bridge.default_namespace.then(|| server.name.clone()))
            };
            let tool_namespace = namespace(&server.tool_namespace);
            let prompt_namespace = namespace(&server.prompt_namespace);
            for (index, tool) in upstream_catalog.tools.iter().enumerate() {
                if !bridge.aggregation.tools || !server.tool_filter.allows(&tool.name) {
                    continue;
                }
                let object = upstream_catalog.tool_objects.get(index).cloned();
                let candidate = Candidate {
                    order,
                    upstream: state.name.clone(),
                    priority: server.priority,
                    original: tool.name.to_string(),
                    namespaced: tool_namespace.is_some(),
                    exposed: exposed(tool_namespace.as_deref(), &tool.name),
                    item: (tool.clone(), object),
                };
                if state.is_ready() {
                    tools.push(candidate);
                } else {
                    let route = Route { upstream: candidate.upstream, name: candidate.original };
                    catalog.unavailable_tools.insert(candidate.exposed, route);
                }
            }
            if !state.is_ready() {
                continue;
            }
            if bridge.aggregation.prompts {
                for prompt in &upstream_catalog.prompts {
                    prompts.push(Candidate {
                        order,
                        upstream: state.name.clone(),
                        priority: server.priority,
                        original: prompt.name.clone(),
                        namespaced: prompt_namespace.is_some(),
                        exposed: exposed(prompt_namespace.as_deref(), &prompt.name),
                        item: prompt.clone(),
                    });
                }
            }
        }
        let policy = bridge.conflict_resolution;
        for (exposed, candidate) in resolve(tools, policy, "tool", &mut catalog.conflicts) {
            let (mut tool, object) = candidate.item;
            tool.name = exposed.clone().into();
            catalog.tool_objects.push(exposed_object(&tool, object, &exposed));
            catalog.tools.push(tool);
            catalog.tool_upstreams.push(candidate.upstream.clone());
            catalog
                .tool_routes
                .insert(exposed, Route { upstream: candidate.upstream, name: candidate.original });
        }
        for (exposed, candidate) in resolve(prompts, policy, "prompt", &mut catalog.conflicts) {
            let mut prompt = candidate.item;
            prompt.name = exposed.clone();
            catalog.prompts.push(prompt);
            catalog
                .prompt_routes
                .insert(exposed, Route { upstream: candidate.upstream, name: candidate.original });
        }
        catalog.unavailable_tools.retain(|exposed, _| !catalog.tool_routes.contains_key(exposed));
        if bridge.aggregation.resources {
            catalog.add_resources(view, settings);
        }
        catalog
    }

    fn add_resources(&mut self, view: &View, settings: &Settings) {
        let ready: Vec<_> = view
            .upstreams
            .iter()
            .filter(|state| state.is_ready())
            .filter_map(|state| Some((state, settings.server(&state.name)?, state.catalog.as_ref()?)))
            .filter(|(_, _, catalog)| catalog.capabilities.resources.is_some())
            .collect();
        for (state, server, _) in &ready {
            self.resource_upstreams.push(state.name.clone());
            let wanted = uri_namespace(server.resource_namespace.as_deref().unwrap_or(&server.name));
            let host = if self.uri_hosts.contains_key(&wanted) {
                with_hash_suffix(&wanted, &state.name).to_ascii_lowercase()
            } else {
                wanted
            };
            self.uri_hosts.insert(host.clone(), state.name.clone());
            self.upstream_hosts.insert(state.name.clone(), host);
            if server.resource_namespace.is_some() {
                self.namespaced_upstreams.insert(state.name.clone());
            }
        }
        // A URI listed by several upstreams is namespaced for each of them (counted once
        // per upstream). So is one already in the bridge's namespaced form
        // (`foxxy://<host>/...`): exposed as is, it could stand for another upstream's.
        let mut uri_count: HashMap<&str, usize> = HashMap::new();
        // Templates are counted by their literal prefix (`mem://` for `mem://{key}`): two
        // upstreams' templates with the same prefix could not tell their URIs apart.
        let mut template_count: HashMap<String, usize> = HashMap::new();
        for (state, _, catalog) in &ready {
            if self.namespaced_upstreams.contains(&state.name) {
                continue;
            }
            let uris: HashSet<&str> =
                catalog.resources.iter().map(|resource| resource.uri.as_str()).collect();
            for uri in uris {
                *uri_count.entry(uri).or_default() += 1;
            }
            let templates: HashSet<String> = catalog
                .resource_templates
                .iter()
                .map(|template| literal_prefix(&template.uri_template))
                .collect();
            for template in templates {
                *template_count.entry(template).or_default() += 1;
            }
        }
        let bridge_form = |uri: &str| naming::split_namespaced_uri(uri).is_some();
        for (state, _, catalog) in &ready {
            let whole = self.namespaced_upstreams.contains(&state.name);
            let host = self.upstream_hosts[&state.name].clone();
            let mut listed = HashSet::new();
            for resource in &catalog.resources {
                let original = resource.uri.clone();
                if !listed.insert(resource.uri.as_str()) {
                    tracing::warn!(upstream = %state.name, "resource `{original}` is listed twice; keeping the first");
                    continue;
                }
                let exposed = if whole
                    || uri_count.get(original.as_str()).copied().unwrap_or(0) > 1
                    || bridge_form(&original)
                {
                    if !whole {
                        self.namespaced_uris.insert((state.name.clone(), original.clone()));
                    }
                    naming::namespaced_uri(&host, &original)
                } else {
                    original.clone()
                };
                let mut resource = resource.clone();
                resource.uri = exposed.clone();
                self.resources.push(resource);
                self.resource_routes.insert(exposed, Route { upstream: state.name.clone(), name: original });
            }
            let mut listed = HashSet::new();
            for template in &catalog.resource_templates {
                let original = template.uri_template.clone();
                if !listed.insert(template.uri_template.as_str()) {
                    continue;
                }
                let namespaced = whole
                    || template_count.get(&literal_prefix(&original)).copied().unwrap_or(0) > 1
                    || bridge_form(&original);
                let exposed =
                    if namespaced { naming::namespaced_uri(&host, &original) } else { original.clone() };
                if !namespaced {
                    self.template_routes.push((
                        literal_prefix(&exposed),
                        state.name.clone(),
                        exposed.clone(),
                    ));
                }
                let mut template = template.clone();
                template.uri_template = exposed;
                self.resource_templates.push(template);
            }
        }
        // Longest prefix first, so the most specific template wins.
        self.template_routes.sort_by_key(|route| std::cmp::Reverse(route.0.len()));
    }

    /// Route of an exposed tool name; a tool of an upstream that is down routes too, so
    /// the call can reconnect it or fail with an error naming it.
    pub fn tool(&self, exposed: &str) -> Option<&Route> {
        self.tool_routes.get(exposed).or_else(|| self.unavailable_tools.get(exposed))
    }

    /// Whether exposed tool `name` is an upstream's `<ns>__sign_in` placeholder.
    pub fn is_sign_in_placeholder(&self, name: &str) -> bool {
        self.tool(name).is_some_and(|route| route.name == super::sign_in::ROUTE_NAME)
    }

    pub fn prompt(&self, exposed: &str) -> Option<&Route> {
        self.prompt_routes.get(exposed)
    }

    /// The upstream and original URI of an exposed resource URI.
    pub fn resource(&self, uri: &str) -> Option<Route> {
        if let Some(route) = self.resource_routes.get(uri) {
            return Some(route.clone());
        }
        if let Some((host, original)) = naming::split_namespaced_uri(uri)
            && let Some(upstream) = self.uri_hosts.get(host)
        {
            return Some(Route { upstream: upstream.clone(), name: original.to_owned() });
        }
        for (prefix, upstream, _) in &self.template_routes {
            if !prefix.is_empty() && uri.starts_with(prefix.as_str()) {
                return Some(Route { upstream: upstream.clone(), name: uri.to_owned() });
            }
        }
        match self.resource_upstreams.as_slice() {
            [only] => Some(Route { upstream: only.clone(), name: uri.to_owned() }),
            _ => None,
        }
    }

    /// The upstream and original template of an exposed URI template (completions).
    pub fn template(&self, exposed: &str) -> Option<Route> {
        if let Some((host, original)) = naming::split_namespaced_uri(exposed)
            && let Some(upstream) = self.uri_hosts.get(host)
        {
            return Some(Route { upstream: upstream.clone(), name: original.to_owned() });
        }
        let prefix = literal_prefix(exposed);
        let exact = self.template_routes.iter().find(|(_, _, template)| template == exposed);
        exact
            .or_else(|| self.template_routes.iter().find(|(literal, _, _)| *literal == prefix))
            .map(|(_, upstream, _)| Route { upstream: upstream.clone(), name: exposed.to_owned() })
    }

    /// How the client sees `uri` of `upstream` (for `resources/updated`).
    pub fn expose_uri(&self, upstream: &str, uri: &str) -> String {
        let namespaced = self.namespaced_upstreams.contains(upstream)
            || self.namespaced_uris.contains(&(Arc::from(upstream), uri.to_owned()));
        match self.upstream_hosts.get(upstream) {
            Some(host) if namespaced => naming::namespaced_uri(host, uri),
            _ => uri.to_owned(),
        }
    }

    pub fn status_of(&self, upstream: &str) -> Option<&UpstreamStatus> {
        self.statuses.iter().find(|status| &*status.name == upstream)
    }
}

/// The tool object the client gets: `written` (the upstream's own, else `tool` encoded)
/// with its name replaced by `exposed`.
fn exposed_object(tool: &Tool, written: Option<Arc<JsonObject>>, exposed: &str) -> Arc<JsonObject> {
    let mut object = match written {
        Some(written) => Arc::unwrap_or_clone(written),
        None => match serde_json::to_value(tool) {
            Ok(serde_json::Value::Object(object)) => object,
            _ => JsonObject::new(),
        },
    };
    object.insert("name".to_owned(), serde_json::Value::String(exposed.to_owned()));
    Arc::new(object)
}

/// The `<ns>__sign_in` placeholder of an upstream waiting for an interactive sign-in.
fn sign_in_candidate(
    order: usize,
    state: &UpstreamState,
    settings: &Settings,
) -> Option<Candidate<(Tool, Option<Arc<JsonObject>>)>> {
    let server = settings.server(&state.name)?;
    let (exposed, item) = super::sign_in::placeholder(state, server, &settings.bridge)?;
    let original = super::sign_in::ROUTE_NAME.to_owned();
    let upstream = state.name.clone();
    // The bridge's own tool: its object is the tool as rmcp encodes it.
    let item = (item, None);
    Some(Candidate { order, upstream, priority: server.priority, original, namespaced: true, exposed, item })
}

/// The part of a URI template before its first expression.
fn literal_prefix(template: &str) -> String {
    template.split('{').next().unwrap_or_default().to_owned()
}

/// Decide the final exposed name of every candidate; candidates that lose a clash are
/// dropped (and logged); under `error` policy each clash is recorded in `conflicts`.
fn resolve<T>(
    candidates: Vec<Candidate<T>>,
    policy: ConflictResolution,
    kind: &str,
    conflicts: &mut Vec<String>,
) -> Vec<(String, Candidate<T>)> {
    let mut groups: HashMap<String, Vec<Candidate<T>>> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for candidate in candidates {
        let group = groups.entry(candidate.exposed.clone()).or_default();
        if group.is_empty() {
            order.push(candidate.exposed.clone());
        }
        if group
            .iter()
            .any(|other| other.upstream == candidate.upstream && other.original == candidate.original)
        {
            tracing::warn!(upstream = %candidate.upstream, "{kind} `{}` is listed twice; keeping the first", candidate.original);
            continue;
        }
        group.push(candidate);
    }
    let mut resolved = Vec::new();
    for exposed in order {
        let Some(mut group) = groups.remove(&exposed) else { continue };
        if group.len() == 1 {
            let candidate = group.remove(0);
            resolved.push((candidate.exposed.clone(), candidate));
            continue;
        }
        let names =
            group.iter().map(|candidate| format!("`{}`", candidate.upstream)).collect::<Vec<_>>().join(", ");
        let across_upstreams = group.iter().any(|candidate| candidate.upstream != group[0].upstream);
        match policy {
            _ if !across_upstreams => disambiguate(group, &mut resolved),
            ConflictResolution::Namespace => disambiguate(group, &mut resolved),
            ConflictResolution::Priority | ConflictResolution::First => {
                group.sort_by_key(|candidate| {
                    if policy == ConflictResolution::Priority {
                        (candidate.priority, candidate.order)
                    } else {
                        (0, candidate.order)
                    }
                });
                let winner = group.remove(0);
                tracing::info!(
                    "{kind} `{exposed}` is offered by {names}; `{}` wins (conflictResolution: {policy:?})",
                    winner.upstream
                );
                resolved.push((exposed.clone(), winner));
            }
            ConflictResolution::Error => {
                let message = format!(
                    "{kind} name clash: `{exposed}` is offered by {names}; set `toolNamespace`/`promptNamespace` on one of them or change `bridge.conflictResolution`"
                );
                tracing::error!("{message}");
                conflicts.push(message);
            }
        }
    }
    resolved.sort_by_key(|(_, candidate)| candidate.order);
    // Renaming can land on a name another upstream already uses: the first keeps it, the
    // later ones get a hashed name that nothing else uses (salted until it is free).
    let mut taken = HashSet::new();
    let clashing: Vec<usize> =
        (0..resolved.len()).filter(|&index| !taken.insert(resolved[index].0.clone())).collect();
    for index in clashing {
        let (exposed, candidate) = &mut resolved[index];
        let key = format!("{}\u{0}{}", candidate.upstream, candidate.original);
        let free = (0u32..)
            .map(|salt| match salt {
                0 => with_hash_suffix(exposed, &key),
                _ => with_hash_suffix(exposed, &format!("{key}\u{0}{salt}")),
            })
            .find(|name| !taken.contains(name))
            .unwrap_or_default();
        taken.insert(free.clone());
        *exposed = free;
    }
    resolved
}

/// Give every candidate of a clash its own name: the server name as namespace when it
/// had none, else (or if that still clashes) a hash of upstream and original name.
fn disambiguate<T>(group: Vec<Candidate<T>>, resolved: &mut Vec<(String, Candidate<T>)>) {
    for candidate in group {
        let exposed = if candidate.namespaced {
            with_hash_suffix(
                &candidate.exposed,
                &format!("{}\u{0}{}", candidate.upstream, candidate.original),
            )
        } else {
            exposed_name(Some(&candidate.upstream), &candidate.original)
        };
        resolved.push((exposed, candidate));
    }
}
