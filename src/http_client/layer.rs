//! The one forwarding layer over rmcp's `StreamableHttpClient` trait.
//!
//! rmcp's streamable HTTP transport talks HTTP through that trait, whose six methods
//! (three POSTs that differ in the limits they carry, two GETs of the event stream, and
//! the session's DELETE) each take the request's parts and an auth header. A client
//! that adds behaviour to another one implements [`StreamableHttpLayer`] instead, with
//! two points of its own: how a request is sent through the inner client ([`send`],
//! e.g. with a bearer token, again after a 401), and what is done with a POST's
//! response before rmcp reads it ([`read_post`]). [`LayeredHttpClient`] implements
//! rmcp's trait for every layer, forwarding each method to the same method of the inner
//! client, so the forwarding is written once. A request is a value
//! ([`PostMessage`], [`GetStream`], [`DeleteSession`]), moved into the inner client
//! when it is sent once and cloned only by a layer that sends it again.
//!
//! [`send`]: StreamableHttpLayer::send
//! [`read_post`]: StreamableHttpLayer::read_post

use std::{collections::HashMap, future::Future, sync::Arc};

use futures::{FutureExt, stream::BoxStream};
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    model::ClientJsonRpcMessage,
    transport::streamable_http_client::{
        StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
    },
};
use sse_stream::{Error as SseError, Sse};

/// The error of streamable HTTP client `C`, in the transport's error type.
pub type HttpLayerError<C> = StreamableHttpError<<C as StreamableHttpClient>::Error>;

/// An event stream as rmcp's client trait returns it.
pub type SseEvents = BoxStream<'static, Result<Sse, SseError>>;

/// A client that adds behaviour to another streamable HTTP client; rmcp's trait is
/// implemented for it by [`LayeredHttpClient`].
pub trait StreamableHttpLayer: Clone + Send + Sync + 'static {
    /// The client the requests go through.
    type Inner: StreamableHttpClient + Sync;
    /// What the layer notes about a message before POSTing it, to read its response by.
    type PostNote: Send;

    fn inner(&self) -> &Self::Inner;

    /// Send `request` through the inner client. `auth_header` is the one rmcp passed;
    /// by default the request is sent once, with it.
    fn send<R: StreamableHttpRequest<Self::Inner>>(
        &self,
        request: R,
        auth_header: Option<String>,
    ) -> impl Future<Output = Result<R::Output, HttpLayerError<Self::Inner>>> + Send + '_ {
        request.send(self.inner(), auth_header)
    }

    /// What to remember of `message`, which is about to be POSTed.
    fn note_post(&self, message: &ClientJsonRpcMessage) -> Self::PostNote;

    /// `message` as it is to be POSTed; by default unchanged.
    fn prepare_post(&self, message: ClientJsonRpcMessage) -> ClientJsonRpcMessage {
        message
    }

    /// A GET's event stream, as rmcp is to read it; by default unchanged.
    fn read_stream(&self, stream: SseEvents) -> SseEvents {
        stream
    }

    /// The response to a POST, as rmcp is to read it.
    fn read_post(
        &self,
        note: Self::PostNote,
        response: StreamableHttpPostResponse,
    ) -> impl Future<Output = StreamableHttpPostResponse> + Send + '_;
}

/// One request of rmcp's client trait, but for its auth header.
pub trait StreamableHttpRequest<C: StreamableHttpClient + Sync>: Clone + Send + Sync + 'static {
    type Output: Send;

    /// Send it through `client` with `auth_header`, by the trait method rmcp called.
    fn send(
        self,
        client: &C,
        auth_header: Option<String>,
    ) -> impl Future<Output = Result<Self::Output, HttpLayerError<C>>> + Send + '_;
}

/// A JSON-RPC message to POST.
#[derive(Clone)]
pub struct PostMessage {
    pub uri: Arc<str>,
    pub message: ClientJsonRpcMessage,
    pub session_id: Option<Arc<str>>,
    pub custom_headers: HashMap<HeaderName, HeaderValue>,
    pub limits: PostLimits,
}

/// Which POST method of the trait was called: the limits it carries.
#[derive(Clone, Copy)]
pub enum PostLimits {
    /// `post_message`: the inner client's own limits.
    Own,
    MaxSseEventSize(usize),
    Response(StreamableHttpResponseLimits),
}

impl<C: StreamableHttpClient + Sync> StreamableHttpRequest<C> for PostMessage {
    type Output = StreamableHttpPostResponse;

    fn send(
        self,
        client: &C,
        auth_header: Option<String>,
    ) -> impl Future<Output = Result<Self::Output, HttpLayerError<C>>> + Send + '_ {
        let Self { uri, message, session_id, custom_headers, limits } = self;
        async move {
            match limits {
                PostLimits::Own => {
                    client.post_message(uri, message, session_id, auth_header, custom_headers).await
                }
                PostLimits::MaxSseEventSize(max) => {
                    client
                        .post_message_with_max_sse_event_size(
                            uri,
                            message,
                            session_id,
                            auth_header,
                            custom_headers,
                            max,
                        )
                        .await
                }
                PostLimits::Response(limits) => {
                    client
                        .post_message_with_response_limits(
                            uri,
                            message,
                            session_id,
                            auth_header,
                            custom_headers,
                            limits,
                        )
                        .await
                }
            }
        }
    }
}

/// The GET that opens the session's event stream.
#[derive(Clone)]
pub struct GetStream {
    pub uri: Arc<str>,
    pub session_id: Option<Arc<str>>,
    pub last_event_id: Option<String>,
    pub custom_headers: HashMap<HeaderName, HeaderValue>,
    /// `None` for `get_stream` (the inner client's own limit).
    pub max_sse_event_size: Option<usize>,
}

impl<C: StreamableHttpClient + Sync> StreamableHttpRequest<C> for GetStream {
    type Output = SseEvents;

    fn send(
        self,
        client: &C,
        auth_header: Option<String>,
    ) -> impl Future<Output = Result<Self::Output, HttpLayerError<C>>> + Send + '_ {
        let Self { uri, session_id, last_event_id, custom_headers, max_sse_event_size } = self;
        async move {
            match max_sse_event_size {
                None => client.get_stream(uri, session_id, last_event_id, auth_header, custom_headers).await,
                Some(max) => {
                    client
                        .get_stream_with_max_sse_event_size(
                            uri,
                            session_id,
                            last_event_id,
                            auth_header,
                            custom_headers,
                            max,
                        )
                        .await
                }
            }
        }
    }
}

/// The DELETE that ends the session.
#[derive(Clone)]
pub struct DeleteSession {
    pub uri: Arc<str>,
    pub session_id: Arc<str>,
    pub custom_headers: HashMap<HeaderName, HeaderValue>,
}

impl<C: StreamableHttpClient + Sync> StreamableHttpRequest<C> for DeleteSession {
    type Output = ();

    fn send(
        self,
        client: &C,
        auth_header: Option<String>,
    ) -> impl Future<Output = Result<Self::Output, HttpLayerError<C>>> + Send + '_ {
        client.delete_session(self.uri, self.session_id, auth_header, self.custom_headers)
    }
}

/// rmcp's streamable HTTP client for layer `L`: each method sends its request through
/// [`StreamableHttpLayer::send`], and a POST's response goes through
/// [`StreamableHttpLayer::read_post`].
#[derive(Clone)]
pub struct LayeredHttpClient<L>(L);

impl<L: StreamableHttpLayer> LayeredHttpClient<L> {
    pub fn new(layer: L) -> Self {
        Self(layer)
    }

    async fn post(
        &self,
        mut request: PostMessage,
        auth_header: Option<String>,
    ) -> Result<StreamableHttpPostResponse, HttpLayerError<L::Inner>> {
        let note = self.0.note_post(&request.message);
        request.message = self.0.prepare_post(request.message);
        let response = self.0.send(request, auth_header).await?;
        Ok(self.0.read_post(note, response).await)
    }
}

impl<L: StreamableHttpLayer> StreamableHttpClient for LayeredHttpClient<L> {
    type Error = <L::Inner as StreamableHttpClient>::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let request = PostMessage { uri, message, session_id, custom_headers, limits: PostLimits::Own };
        self.post(request, auth_header).await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let limits = PostLimits::MaxSseEventSize(max_sse_event_size);
        self.post(PostMessage { uri, message, session_id, custom_headers, limits }, auth_header).await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let limits = PostLimits::Response(limits);
        self.post(PostMessage { uri, message, session_id, custom_headers, limits }, auth_header).await
    }

    fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<(), StreamableHttpError<Self::Error>>> + Send + '_ {
        self.0.send(DeleteSession { uri, session_id, custom_headers }, auth_header)
    }

    fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<SseEvents, StreamableHttpError<Self::Error>>> + Send + '_ {
        let request = GetStream { uri, session_id, last_event_id, custom_headers, max_sse_event_size: None };
        self.0.send(request, auth_header).map(|stream| stream.map(|stream| self.0.read_stream(stream)))
    }

    fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = Result<SseEvents, StreamableHttpError<Self::Error>>> + Send + '_ {
        let max_sse_event_size = Some(max_sse_event_size);
        let request = GetStream { uri, session_id, last_event_id, custom_headers, max_sse_event_size };
        self.0.send(request, auth_header).map(|stream| stream.map(|stream| self.0.read_stream(stream)))
    }
}
