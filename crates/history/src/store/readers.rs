//! The read connections, lent out one per blocking read.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

pub(super) struct ReaderPool {
    /// One permit per connection in `idle`: holding one guarantees a pop.
    pub(super) permits: Arc<Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    pub(super) fn new(idle: Vec<Connection>) -> Self {
        ReaderPool {
            permits: Arc::new(Semaphore::new(idle.len())),
            idle: Mutex::new(idle),
        }
    }

    pub(super) fn lease(&self) -> Lease<'_> {
        let conn = self
            .idle
            .lock()
            .expect("the reader pool lock is only held to push or pop")
            .pop()
            .expect("a reader permit guarantees an idle connection");
        Lease {
            pool: self,
            conn: Some(conn),
        }
    }
}

/// A read connection out of the pool; back in on drop, even if the
/// reader's closure panicked, so the pool never shrinks.
pub(super) struct Lease<'a> {
    pool: &'a ReaderPool,
    conn: Option<Connection>,
}

impl Lease<'_> {
    pub(super) fn conn(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let (Some(conn), Ok(mut idle)) = (self.conn.take(), self.pool.idle.lock()) {
            idle.push(conn);
        }
    }
}
