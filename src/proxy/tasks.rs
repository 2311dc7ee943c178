//! Tasks (MCP 2025-11-25): task-augmented `tools/call` and `tasks/get`, `tasks/result`,
//! `tasks/cancel`, `tasks/list`, relayed as the upstreams write them (rmcp 3.11 models
//! another tasks proposal, so these travel as raw JSON: `Upstreams::request_raw`).
//!
//! Task ids are upstream-local, so the client sees `<upstream>:<upstream's id>`: two
//! upstreams' ids never collide, and the id alone says where a `tasks/*` request goes
//! (the longest configured upstream name that prefixes it, so no table is kept and a
//! task listed by `tasks/list` routes as well as one created here). `tasks/list` walks
//! the upstreams that declared `tasks.list` in config order, one upstream's page per
//! page; its cursor is `<upstream>:<that upstream's cursor>`. When one of them fails it,
//! the answer is that error, naming the upstream: a page that left its tasks out would
//! tell the client they are gone.
//!
//! A bridge that serves one upstream as that server itself (the hub's connections)
//! passes task ids and cursors as the upstream wrote them: the bridge on the other side
//! exposes them.

use rmcp::ErrorData;
use serde_json::{Map, Value};

use super::Bridge;
use crate::upstream::{RequestOptions, UpstreamError};

/// How long a `tasks/result` may wait for its task to end.
const TASK_RESULT_WAIT: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// The `_meta` key that ties a message to its task.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// Everything the bridge can relay, as `capabilities.tasks`.
fn relayable() -> Value {
    serde_json::json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}})
}

/// `into` with every member of `from` added, objects merged member by member.
fn union(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                union(into.entry(key.clone()).or_insert_with(|| Value::Object(Map::new())), value);
            }
        }
        (into, from) => *into = from.clone(),
    }
}

/// The client's id of task `task_id` of `upstream`.
pub fn exposed_task_id(upstream: &str, task_id: &str) -> String {
    format!("{upstream}:{task_id}")
}

impl Bridge {
    /// What the bridge declares under `capabilities.tasks` when it answers `initialize`:
    /// the union of the ready upstreams' own once every upstream has made its first
    /// attempt (`bridge.instructionsWait`), else everything it can relay, since the
    /// upstreams still connecting cannot be asked. `None`: declare none.
    pub(crate) fn tasks_capability(&self) -> Option<Value> {
        let view = self.upstreams.view();
        let view = view.borrow();
        if !view.all_settled() {
            return Some(relayable());
        }
        let mut declared: Option<Value> = None;
        for state in view.upstreams.iter().filter(|state| state.is_ready()) {
            if let Some(tasks) = state.catalog.as_ref().and_then(|catalog| catalog.tasks.as_ref()) {
                union(declared.get_or_insert_with(|| Value::Object(Map::new())), tasks);
            }
        }
        declared
    }

    /// Serve the task request `method` (or a task-augmented `tools/call`) with the
    /// client's `params`; the result as the upstream wrote it, task ids exposed.
    pub(crate) async fn relay_task_request(
        &self,
        method: &str,
        mut params: Map<String, Value>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<Value, ErrorData> {
        let meta =
            params.remove("_meta").and_then(|meta| serde_json::from_value(meta).ok()).unwrap_or_default();
        let mut options = RequestOptions::for_client(cancel, meta);
        if method == "tasks/result" {
            // It answers when the task ends, however long it runs.
            options.timeout = Some(TASK_RESULT_WAIT);
        }
        match method {
            "tools/call" => self.call_as_task(params, options).await,
            "tasks/list" => self.list_tasks(params, options).await,
            _ => {
                let exposed = params.get("taskId").and_then(Value::as_str).unwrap_or_default().to_owned();
                let Some((upstream, own)) = self.task_owner(&exposed) else {
                    return Err(ErrorData::invalid_params(format!("unknown task `{exposed}`"), None));
                };
                params.insert("taskId".to_owned(), Value::String(own));
                let mut result = self.raw(&upstream, method, params, options).await?;
                self.expose_ids(&upstream, &mut result);
                Ok(result)
            }
        }
    }

    async fn call_as_task(
        &self,
        mut params: Map<String, Value>,
        options: RequestOptions,
    ) -> Result<Value, ErrorData> {
        let name = params.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let Some(route) = self.route(|catalog| catalog.tool(&name).cloned()).await else {
            return Err(ErrorData::invalid_params(super::unknown_tool(&self.catalog(), &name), None));
        };
        params.insert("name".to_owned(), Value::String(route.name.clone()));
        let mut result = self.raw(&route.upstream, "tools/call", params, options).await?;
        self.expose_ids(&route.upstream, &mut result);
        Ok(result)
    }

    async fn list_tasks(
        &self,
        params: Map<String, Value>,
        options: RequestOptions,
    ) -> Result<Value, ErrorData> {
        if let Some(upstream) = &self.serves_as {
            return self.raw(upstream, "tasks/list", params, options).await;
        }
        let upstreams: Vec<String> = {
            let view = self.upstreams.view();
            let view = view.borrow();
            view.upstreams
                .iter()
                .filter(|state| state.is_ready() && lists_tasks(state))
                .map(|state| state.name.to_string())
                .collect()
        };
        // Where to start: the cursor's upstream and its own cursor, else the first one.
        let (mut index, mut cursor) = (0, None);
        if let Some(exposed) = params.get("cursor").and_then(Value::as_str) {
            let found = upstreams.iter().position(|name| exposed.starts_with(&format!("{name}:")));
            let Some(found) = found else {
                return Err(ErrorData::invalid_params(format!("invalid cursor `{exposed}`"), None));
            };
            index = found;
            let own = &exposed[upstreams[found].len() + 1..];
            cursor = (!own.is_empty()).then(|| own.to_owned());
        }
        let mut tasks = Vec::new();
        // The page's other members (`_meta`) are those of the last upstream page read.
        let mut result = Map::new();
        while let Some(upstream) = upstreams.get(index) {
            let mut page = Map::new();
            if let Some(cursor) = cursor.take() {
                page.insert("cursor".to_owned(), Value::String(cursor));
            }
            // A page without one upstream's tasks would say they are gone: its failure
            // is the answer.
            let mut listed =
                self.raw(upstream, "tasks/list", page, options.clone()).await.map_err(|error| {
                    let message = format!("`tasks/list` failed at upstream `{upstream}`: {}", error.message);
                    ErrorData::internal_error(message, None)
                })?;
            index += 1;
            expose_ids(upstream, &mut listed);
            if let Some(Value::Array(listed_tasks)) = listed.get_mut("tasks").map(Value::take) {
                tasks.extend(listed_tasks);
            }
            let next =
                listed.get("nextCursor").and_then(Value::as_str).map(|next| exposed_task_id(upstream, next));
            if let Value::Object(listed) = listed {
                result = listed;
                result.remove("nextCursor");
            }
            let next = next.or_else(|| {
                (!tasks.is_empty() && index < upstreams.len()).then(|| format!("{}:", upstreams[index]))
            });
            if let Some(next) = next {
                result.insert("tasks".to_owned(), Value::Array(tasks));
                result.insert("nextCursor".to_owned(), Value::String(next));
                return Ok(Value::Object(result));
            }
        }
        result.insert("tasks".to_owned(), Value::Array(tasks));
        Ok(Value::Object(result))
    }

    async fn raw(
        &self,
        upstream: &str,
        method: &str,
        params: Map<String, Value>,
        options: RequestOptions,
    ) -> Result<Value, ErrorData> {
        self.upstreams.request_raw(upstream, method.to_owned(), params, options).await.map_err(|error| {
            match error {
                UpstreamError::Mcp(error) => error,
                other => ErrorData::internal_error(format!("cannot relay `{method}`: {other}"), None),
            }
        })
    }

    /// Expose the task ids in `value`, a result of `upstream`; a bridge that serves one
    /// upstream as that server itself keeps them as the upstream wrote them.
    fn expose_ids(&self, upstream: &str, value: &mut Value) {
        if self.serves_as.is_none() {
            expose_ids(upstream, value);
        }
    }

    /// The upstream that owns the exposed task id, and its own id.
    fn task_owner(&self, exposed: &str) -> Option<(String, String)> {
        if let Some(upstream) = &self.serves_as {
            return Some((upstream.to_string(), exposed.to_owned()));
        }
        let settings = self.settings.borrow().clone();
        let (owner, own) = owner_of(settings.servers.iter().map(|server| server.name.as_str()), exposed)?;
        Some((owner.to_owned(), own.to_owned()))
    }
}

/// Whether `state`'s upstream declared `tasks.list` (one that did not has no task list).
fn lists_tasks(state: &crate::upstream::UpstreamState) -> bool {
    state
        .catalog
        .as_ref()
        .and_then(|catalog| catalog.tasks.as_ref())
        .is_some_and(|tasks| tasks.get("list").is_some())
}

/// Of `names`, the longest that `exposed` starts with followed by `:` and an id; that
/// name and the id.
fn owner_of<'a, 'b>(names: impl Iterator<Item = &'a str>, exposed: &'b str) -> Option<(&'a str, &'b str)> {
    let owner = names
        .filter(|name| {
            exposed.len() > name.len() + 1
                && exposed.starts_with(name)
                && exposed[name.len()..].starts_with(':')
        })
        .max_by_key(|name| name.len())?;
    Some((owner, &exposed[owner.len() + 1..]))
}

/// Expose every task id in `value` (a task, a `CreateTaskResult`, a task list, a
/// related-task `_meta`) as the client knows it.
pub fn expose_ids(upstream: &str, value: &mut Value) {
    let expose = |id: &mut Value| {
        if let Value::String(own) = id {
            *own = exposed_task_id(upstream, own);
        }
    };
    if let Some(id) = value.get_mut("taskId") {
        expose(id);
    }
    if let Some(id) = value.get_mut("task").and_then(|task| task.get_mut("taskId")) {
        expose(id);
    }
    if let Some(Value::Array(tasks)) = value.get_mut("tasks") {
        for task in tasks {
            if let Some(id) = task.get_mut("taskId") {
                expose(id);
            }
        }
    }
    if let Some(id) = value
        .get_mut("_meta")
        .and_then(|meta| meta.get_mut(RELATED_TASK))
        .and_then(|task| task.get_mut("taskId"))
    {
        expose(id);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn capabilities_are_united_member_by_member() {
        let mut united = json!({"list": {}});
        union(&mut united, &json!({"requests": {"tools": {"call": {}}}}));
        union(&mut united, &json!({"cancel": {}, "requests": {"sampling": {"createMessage": {}}}}));
        assert_eq!(
            united,
            json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}, "sampling": {"createMessage": {}}}})
        );
    }

    #[test]
    fn task_ids_route_back_to_their_upstream() {
        let check = |exposed: &str, expected: Option<(&str, &str)>| {
            assert_eq!(owner_of(["a", "a:b", "c"].into_iter(), exposed), expected, "{exposed}");
        };
        check("a:1", Some(("a", "1")));
        check("a:b:1", Some(("a:b", "1")));
        check("a:x:1", Some(("a", "x:1")));
        check("c:", None);
        check("d:1", None);
        check("ab:1", None);
    }

    #[test]
    fn every_task_id_in_a_result_is_exposed() {
        let mut value = json!({
            "taskId": "1", "task": {"taskId": "2"}, "tasks": [{"taskId": "3"}, {"taskId": 4}],
            "_meta": {RELATED_TASK: {"taskId": "5"}}, "other": {"taskId": "6"},
        });
        expose_ids("up", &mut value);
        assert_eq!(
            value,
            json!({
                "taskId": "up:1", "task": {"taskId": "up:2"}, "tasks": [{"taskId": "up:3"}, {"taskId": 4}],
                "_meta": {RELATED_TASK: {"taskId": "up:5"}}, "other": {"taskId": "6"},
            })
        );
    }
}
