//! The aggregator's side: taking a node's stream and serving the health
//! table. The agent calls these on aggregators only; every other node
//! answers 404, so a misdirected stream is an error the node sees, not
//! rows in a log no one replicates.

use bytes::Bytes;
use starling_history::{Store, origin_node, valid_node_name, valid_origin};
use starling_model::ApiError;
use starling_replicate::refusal;
use starling_seal::{Keyring, Purpose, seal_json};

use crate::metrics::AggregationMetrics;
use crate::wire::{
    HealthReply, HealthRequest, StreamReply, StreamRequest, WindowReply, WindowRequest,
};

/// Rows in one health-table answer: about 150 bytes each, so a whole
/// 5,000-node table of 6 checks comes in 6 answers of about 1 MB.
pub const HEALTH_BATCH_ROWS: usize = 5000;
/// Events in one window answer. A node asks every few health intervals,
/// so this bounds what the window costs it however busy the cluster is:
/// at more events than this per ask, the window holds the newest.
pub const WINDOW_BATCH_ROWS: usize = 200;
/// Rows one stream may carry, as a sync batch does.
pub const STREAM_BATCH_ROWS: usize = starling_replicate::SYNC_BATCH_ROWS;

/// Store a node's rows and acknowledge them.
pub async fn answer_stream(
    store: &Store,
    keyring: &Keyring,
    metrics: &AggregationMetrics,
    body: Bytes,
) -> Result<Vec<u8>, ApiError> {
    let request: StreamRequest =
        starling_seal::open_json(keyring, Purpose::StreamRequest, body.to_vec())
            .map_err(refusal("stream"))?;
    check_stream(&request)?;
    let origin = request.origin;
    let held = through_of(store, &origin).await?;
    let rows = if held >= request.from {
        // Contiguous with what we hold: the sender's `through` is true
        // here too (rows it deleted by age are vouched for, not awaited).
        store.apply_batch(request.batch).await
    } else {
        // Past a gap: keep the rows, and answer where we really stand.
        store.insert_replicated(request.batch.events).await
    }
    .map_err(unavailable)?;
    metrics.ingested(rows);
    let through = through_of(store, &origin).await?;
    let reply = StreamReply {
        aggregator: store.node_name().to_owned(),
        epoch: store.origin().to_owned(),
        origin,
        through,
    };
    Ok(seal_json(keyring, Purpose::StreamReply, &reply))
}

async fn through_of(store: &Store, origin: &str) -> Result<u64, ApiError> {
    store
        .held_through(origin.to_owned())
        .await
        .map_err(unavailable)
}

/// A stream carries one log of its sender only: its origin is the
/// sender's, and every row and `through` entry names it.
fn check_stream(request: &StreamRequest) -> Result<(), ApiError> {
    let bad = |why: String| ApiError::BadRequest(format!("stream: {why}"));
    let origin = &request.origin;
    if !valid_node_name(&request.node) {
        return Err(bad(format!("{:?} is not a node name", request.node)));
    }
    if !valid_origin(origin) || origin_node(origin) != request.node {
        return Err(bad(format!("{origin:?} is not a log of {}", request.node)));
    }
    let batch = &request.batch;
    let mut named = batch
        .through
        .keys()
        .chain(batch.events.iter().map(|e| &e.origin));
    if named.any(|other| other != origin) {
        return Err(bad(format!("rows of a log other than {origin}")));
    }
    if batch.events.len() > STREAM_BATCH_ROWS {
        return Err(bad(format!("more than {STREAM_BATCH_ROWS} rows")));
    }
    Ok(())
}

/// The health table's changes after the asked revision.
pub async fn answer_health(
    store: &Store,
    keyring: &Keyring,
    body: Bytes,
) -> Result<Vec<u8>, ApiError> {
    let request: HealthRequest =
        starling_seal::open_json(keyring, Purpose::HealthRequest, body.to_vec())
            .map_err(refusal("health table"))?;
    let (epoch, after) = place(store, request.epoch.as_deref(), request.after);
    let mut changed = store
        .latest_after(after, HEALTH_BATCH_ROWS + 1)
        .await
        .map_err(unavailable)?;
    let more = changed.len() > HEALTH_BATCH_ROWS;
    changed.truncate(HEALTH_BATCH_ROWS);
    let through = changed.last().map_or(after, |&(revision, _)| revision);
    let reply = HealthReply {
        aggregator: store.node_name().to_owned(),
        epoch,
        changed: changed.into_iter().map(|(_, result)| result).collect(),
        through,
        more,
    };
    Ok(seal_json(keyring, Purpose::HealthReply, &reply))
}

/// Serve the newest events this aggregator took in after the asker's place.
pub async fn answer_window(
    store: &Store,
    keyring: &Keyring,
    body: Bytes,
) -> Result<Vec<u8>, ApiError> {
    let request: WindowRequest =
        starling_seal::open_json(keyring, Purpose::WindowRequest, body.to_vec())
            .map_err(refusal("window"))?;
    let (epoch, after) = place(store, request.epoch.as_deref(), request.after);
    let (events, through) = store
        .recent_events(after, WINDOW_BATCH_ROWS)
        .await
        .map_err(unavailable)?;
    let reply = WindowReply {
        aggregator: store.node_name().to_owned(),
        epoch,
        events,
        through,
    };
    Ok(seal_json(keyring, Purpose::WindowReply, &reply))
}

/// This database's epoch, and the asker's place in it (see `Cursor`):
/// `after` if the asker got it from this very database, else 0 (from the
/// start of the table, the newest of the log).
fn place(store: &Store, asked_epoch: Option<&str>, after: u64) -> (String, u64) {
    let epoch = store.origin().to_owned();
    let after = if asked_epoch == Some(epoch.as_str()) {
        after
    } else {
        0
    };
    (epoch, after)
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("history: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_history::SyncBatch;

    fn request(node: &str, origins: &[&str]) -> StreamRequest {
        StreamRequest {
            node: node.to_owned(),
            origin: origins.first().copied().unwrap_or("").to_owned(),
            from: 0,
            batch: SyncBatch {
                through: origins.iter().map(|o| ((*o).to_owned(), 1)).collect(),
                ..SyncBatch::default()
            },
        }
    }

    fn result(node: &str, at_unix_ms: u64) -> starling_history::CheckResult {
        starling_history::CheckResult {
            node: node.to_owned(),
            check: "etcd".to_owned(),
            status: starling_model::Status::Ok,
            message: "etcd: 3 of 3 members healthy".to_owned(),
            details: serde_json::Value::Null,
            duration_ms: 3,
            at_unix_ms,
        }
    }

    async fn ask(store: &Store, keyring: &Keyring, request: &HealthRequest) -> HealthReply {
        let body = seal_json(keyring, Purpose::HealthRequest, request);
        let sealed = answer_health(store, keyring, body.into())
            .await
            .expect("answers");
        starling_seal::open_json(keyring, Purpose::HealthReply, sealed).expect("opens")
    }

    /// The answer's `through` is the asker's next place: past every result
    /// it carries, kept when nothing changed, and from the start when the
    /// asker's copy came from another database.
    #[tokio::test]
    async fn a_health_answer_says_where_the_next_ask_starts() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(
            &dir.path().join("history.db"),
            "agg-1",
            starling_history::StoreConfig::default(),
            starling_history::HistoryMetrics::default(),
        )
        .expect("opens");
        let keyring = Keyring::parse(&Keyring::generate_key()).expect("a fresh key parses");
        // Its replay memory refuses stamps from its own first millisecond.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        for (node, at) in [("n1", 1_000), ("n2", 1_000), ("n1", 2_000)] {
            store
                .record_result(result(node, at))
                .await
                .expect("records");
        }
        let first = ask(
            &store,
            &keyring,
            &HealthRequest {
                epoch: None,
                after: 0,
            },
        )
        .await;
        let nodes: Vec<&str> = first.changed.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(
            nodes,
            ["n2", "n1"],
            "each (node, check) once, oldest change first"
        );
        assert!(first.through > 0 && !first.more);

        let same = HealthRequest {
            epoch: Some(first.epoch.clone()),
            after: first.through,
        };
        let quiet = ask(&store, &keyring, &same).await;
        assert!(quiet.changed.is_empty());
        assert_eq!(quiet.through, first.through, "nothing changed: same place");

        store
            .record_result(result("n2", 3_000))
            .await
            .expect("records");
        let next = ask(&store, &keyring, &same).await;
        assert_eq!(next.changed, [result("n2", 3_000)]);
        assert!(next.through > first.through);

        let elsewhere = HealthRequest {
            epoch: Some("agg-0#00000000000000aa".to_owned()),
            after: next.through,
        };
        let whole = ask(&store, &keyring, &elsewhere).await;
        assert_eq!(
            whole.changed.len(),
            2,
            "another database's place starts over"
        );
        assert_eq!(whole.through, next.through);
    }

    #[test]
    fn a_stream_carries_one_log_of_its_sender_only() {
        let own = "n1#00000000000000aa";
        check_stream(&request("n1", &[own])).expect("valid");
        check_stream(&request("n1", &[own, own])).expect("one log named twice");
        let refused = [
            request("n1", &[]),
            request("n2", &[own]),
            request("n1", &[own, "n1#00000000000000bb"]),
            request("n1", &["n1#nothex"]),
            request("bad name", &[own]),
        ];
        for request in refused {
            assert!(
                matches!(check_stream(&request), Err(ApiError::BadRequest(_))),
                "{request:?}"
            );
        }
    }
}
