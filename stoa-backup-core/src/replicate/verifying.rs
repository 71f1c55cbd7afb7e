//! The stream a copy hands to the target: the source's stored bytes, hashed on the way, and
//! cut off with an integrity error as soon as they are not what the manifest recorded (too
//! many bytes at once, a wrong size or digest at the end), so that the target's atomic put
//! keeps nothing of a damaged artifact.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};

use crate::codec::hash::hex;
use crate::error::{Error, Result};
use crate::stream::ByteStream;

/// What the bytes must be, and who they belong to (for the error).
#[derive(Debug, Clone)]
pub(super) struct Expected {
    pub size: u64,
    pub sha256: String,
    /// Run, component and key, for the error.
    pub run: String,
    pub component: String,
    pub key: String,
    /// Where they are read from (the source's describe).
    pub from: String,
}

impl Expected {
    /// The error for bytes that are not what the manifest says.
    pub(super) fn mismatch(&self, what: String) -> Error {
        Error::integrity(format!(
            "artifact {} of run {} on {} {what}: the run is damaged there and was not copied",
            self.key, self.run, self.from
        ))
        .with_component(self.component.clone())
        .with_operation("copy run")
        .with_artifact(self.key.clone())
        .with_context("run", self.run.clone())
        .with_hint(
            "verify the run on its storage (Catalog::verify_run, `stoa-backup verify`); copy \
             another run, or restore this one from a target where it is intact",
        )
    }
}

/// Bytes counted while streaming, and the mismatch found, if any (a sink may wrap the
/// stream's error in its own).
#[derive(Debug, Clone, Default)]
pub(super) struct Counted {
    size: Arc<Mutex<u64>>,
    failure: Arc<Mutex<Option<Error>>>,
}

impl Counted {
    pub(super) fn get(&self) -> u64 {
        *self.size.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The integrity error the stream ended in, if it did.
    pub(super) fn failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Error::duplicate)
    }

    fn fail(&self, e: &Error) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.duplicate());
    }
}

struct Verifying {
    inner: ByteStream,
    hasher: Option<Sha256>,
    size: u64,
    expected: Expected,
    counted: Counted,
    done: bool,
}

impl Stream for Verifying {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.size += chunk.len() as u64;
                if this.size > this.expected.size {
                    this.done = true;
                    let e = this.expected.mismatch(format!(
                        "holds more than the {} bytes its manifest records",
                        this.expected.size
                    ));
                    this.counted.fail(&e);
                    return Poll::Ready(Some(Err(e)));
                }
                if let Some(h) = this.hasher.as_mut() {
                    h.update(&chunk);
                }
                *this.counted.size.lock().unwrap_or_else(|p| p.into_inner()) = this.size;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                this.hasher = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.done = true;
                let Some(h) = this.hasher.take() else {
                    return Poll::Ready(None);
                };
                if this.size != this.expected.size {
                    let e = this.expected.mismatch(format!(
                        "holds {} bytes where its manifest records {}",
                        this.size, this.expected.size
                    ));
                    this.counted.fail(&e);
                    return Poll::Ready(Some(Err(e)));
                }
                let sha = hex(&h.finalize());
                if sha != this.expected.sha256 {
                    let e = this.expected.mismatch(format!(
                        "has SHA-256 {sha} where its manifest records {}",
                        this.expected.sha256
                    ));
                    this.counted.fail(&e);
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `stream`, checked against `expected` as it passes: the last item is an integrity error
/// when the bytes are not the recorded ones.
pub(super) fn verifying(stream: ByteStream, expected: Expected) -> (ByteStream, Counted) {
    let counted = Counted::default();
    let s = Verifying {
        inner: stream,
        hasher: Some(Sha256::new()),
        size: 0,
        expected,
        counted: counted.clone(),
        done: false,
    };
    (Box::pin(s), counted)
}

/// Reads `stream` to its end and checks it against `expected` (a read-back on the target);
/// `Ok(false)` when the bytes differ, `Err` when reading failed.
pub(super) async fn matches(stream: ByteStream, expected: &Expected) -> Result<bool> {
    use futures::StreamExt;
    let (mut s, counted) = verifying(stream, expected.clone());
    while let Some(chunk) = s.next().await {
        if let Err(e) = chunk {
            return match counted.failure() {
                Some(_) => Ok(false),
                None => Err(e),
            };
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::hash::sha256_hex;
    use futures::StreamExt;

    fn expected(bytes: &[u8]) -> Expected {
        Expected {
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
            run: "20260101T000000Z-000001".into(),
            component: "files".into(),
            key: "runs/20260101T000000Z-000001/files/a".into(),
            from: "memory".into(),
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        Box::pin(futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        ))
    }

    #[tokio::test]
    async fn the_recorded_bytes_pass_unchanged() {
        let (s, counted) = verifying(chunks(&[b"hello ", b"world"]), expected(b"hello world"));
        let out: Vec<Result<Bytes>> = s.collect().await;
        assert!(out.iter().all(|c| c.is_ok()));
        assert_eq!(out.len(), 2);
        assert_eq!(counted.get(), 11);
    }

    #[tokio::test]
    async fn other_bytes_end_in_an_integrity_error_naming_the_artifact() {
        for (parts, why) in [
            (&[b"hello ".as_slice(), b"World"][..], "SHA-256"),
            (&[b"hello ".as_slice(), b"worl"][..], "10 bytes"),
            (&[b"hello ".as_slice(), b"world!"][..], "more than"),
        ] {
            let owned: Vec<Result<Bytes>> = parts
                .iter()
                .map(|p| Ok(Bytes::copy_from_slice(p)))
                .collect();
            let (s, _) = verifying(
                Box::pin(futures::stream::iter(owned)),
                expected(b"hello world"),
            );
            let out: Vec<Result<Bytes>> = s.collect().await;
            let e = out.last().unwrap().as_ref().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Integrity);
            assert!(e.to_string().contains(why), "{e}");
            assert_eq!(e.component(), Some("files"));
            assert_eq!(e.artifact(), Some("runs/20260101T000000Z-000001/files/a"));
            assert_eq!(e.context_value("run"), Some("20260101T000000Z-000001"));
        }
        assert!(!matches(chunks(&[b"hello"]), &expected(b"hello world"))
            .await
            .unwrap());
        assert!(
            matches(chunks(&[b"hello world"]), &expected(b"hello world"))
                .await
                .unwrap()
        );
    }
}
