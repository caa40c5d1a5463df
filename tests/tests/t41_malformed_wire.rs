//! What no well-formed client sends is refused as the caller's fault, naming what was
//! wrong, and loses nothing that was accepted: an enum value outside the schema, bytes
//! that are not a protobuf message, and a stream whose middle request is garbage or too
//! large (every request before it is answered, then the stream ends with the error).

use std::marker::PhantomData;
use std::time::Duration;

use cairn_proto as pb;
use cairn_tests::{create_ns, Settings, TestCluster};
use prost::bytes::BufMut;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Sends each request's bytes exactly as given; decodes answers as `R`.
struct Raw<R>(PhantomData<R>);

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

struct AnswerDecoder<R>(PhantomData<R>);

impl<R: Message + Default> Decoder for AnswerDecoder<R> {
    type Item = R;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl<R: Message + Default + Send + 'static> Codec for Raw<R> {
    type Encode = Vec<u8>;
    type Decode = R;
    type Encoder = RawEncoder;
    type Decoder = AnswerDecoder<R>;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> AnswerDecoder<R> {
        AnswerDecoder(PhantomData)
    }
}

fn raw_client(addr: &str) -> tonic::client::Grpc<Channel> {
    let channel = cairn_proto::Dial::new()
        .timeout(Duration::from_secs(10))
        .channel(addr)
        .expect("a valid address");
    tonic::client::Grpc::new(channel)
}

/// Bytes that are no protobuf message: a varint that never ends.
const GARBAGE: [u8; 11] = [0xff; 11];

/// Open a SubmitStream, send `requests` as they are, and collect every answer and the
/// status the stream ended with.
async fn stream(
    addr: &str,
    requests: Vec<Vec<u8>>,
) -> (Vec<pb::SubmitStreamResponse>, Result<(), Status>) {
    let mut grpc = raw_client(addr);
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/cairn.v1.Cairn/SubmitStream");
    let answers = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(requests)),
            path,
            Raw::<pb::SubmitStreamResponse>(PhantomData),
        )
        .await;
    let mut answers = match answers {
        Ok(r) => r.into_inner(),
        Err(s) => return (Vec::new(), Err(s)),
    };
    let mut got = Vec::new();
    loop {
        match answers.message().await {
            Ok(Some(a)) => got.push(a),
            Ok(None) => return (got, Ok(())),
            Err(s) => return (got, Err(s)),
        }
    }
}

fn applied(a: &pb::SubmitStreamResponse) -> bool {
    matches!(a.result, Some(pb::submit_stream_response::Result::Ok(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_the_callers_fault_and_lose_nothing_accepted() -> anyhow::Result<()>
{
    let settings = Settings {
        max_request_bytes: 64 * 1024,
        ..Settings::default()
    };
    let mut cluster = TestCluster::start(1, settings).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let addr = cluster.node(1).addr.clone();
    let mut c = cluster.node(1).client();

    // --- an enum value the schema does not have
    let s = c
        .list_jobs(pb::ListJobsRequest {
            consistency: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(
        s.message().contains("consistency: unknown value 99"),
        "{}",
        s.message()
    );
    let s = c
        .list_events(pb::ListEventsRequest {
            consistency: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");

    // --- bytes that do not decode, on a unary call
    let mut grpc = raw_client(&addr);
    grpc.ready().await?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/cairn.v1.Cairn/Submit");
    let s = grpc
        .unary(
            tonic::Request::new(GARBAGE.to_vec()),
            path,
            Raw::<pb::SubmitResponse>(PhantomData),
        )
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("SubmitRequest"), "{}", s.message());

    // --- a stream whose second request does not decode
    let (answers, end) = stream(
        &addr,
        vec![
            create_ns("before-garbage").encode_to_vec(),
            GARBAGE.to_vec(),
            create_ns("after-garbage").encode_to_vec(),
        ],
    )
    .await;
    assert_eq!(
        answers.len(),
        1,
        "the request before the garbage is answered"
    );
    assert!(applied(&answers[0]), "{:?}", answers[0]);
    let s = end.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(
        s.message().contains("request 2 of the stream"),
        "{}",
        s.message()
    );

    // --- a stream whose second request is over the size limit
    let mut huge = create_ns("huge");
    if let Some(pb::command::Body::CreateNamespace(ns)) =
        huge.command.as_mut().and_then(|c| c.body.as_mut())
    {
        ns.labels.insert("x".into(), "y".repeat(100 * 1024));
    }
    let (answers, end) = stream(
        &addr,
        vec![
            create_ns("before-huge").encode_to_vec(),
            huge.encode_to_vec(),
            create_ns("after-huge").encode_to_vec(),
        ],
    )
    .await;
    assert_eq!(
        answers.len(),
        1,
        "the request before the huge one is answered"
    );
    assert!(applied(&answers[0]), "{:?}", answers[0]);
    let s = end.unwrap_err();
    assert_eq!(s.code(), Code::OutOfRange, "{s:?}");
    assert!(
        s.message().contains("request 2 of the stream"),
        "{}",
        s.message()
    );

    // --- exactly what was answered was applied
    let names: Vec<String> = c
        .list_entities(pb::ListEntitiesRequest {
            kind: "namespace".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .entities
        .into_iter()
        .filter_map(|e| e.r#ref.map(|r| r.name))
        .collect();
    assert_eq!(names, ["before-garbage", "before-huge"]);
    Ok(())
}
