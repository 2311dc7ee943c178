//! JSON-RPC as the bridge reads and writes it on its hot paths, below both the client
//! side (`proxy/`) and the upstream side (`upstream/`), which import it; it imports
//! neither.
//!
//! - [`line_reader`]: the one bounded newline framer, used for the client's stdin and for
//!   every stdio upstream's stdout.
//! - [`ids`]: JSON-RPC ids and progress tokens decoded as rmcp decodes them.
//! - [`tool_call`]: the params of a `tools/call`, borrowed from the client's line.
//! - [`tool_result`]: a `tools/call` result relayed as the upstream wrote it, and the
//!   decoders that read tool results without trying every result type.
//!
//! It does not own what a message means to the bridge (routing, in-flight requests,
//! errors owed to a peer): that stays with the transports that use it.

pub mod ids;
pub mod line_reader;
pub mod tool_call;
pub mod tool_result;

pub use ids::number_or_string;
pub use line_reader::{BoundedLineReader, Framed};
pub use tool_call::{MetaRef, ToolCall, ToolCallRef};
pub use tool_result::{RawToolResult, ResponseLine, ToolAnswer, response_id, tool_answer, tool_response};
