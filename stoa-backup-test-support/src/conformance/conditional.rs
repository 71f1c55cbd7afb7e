//! The conditional puts of a sink that declares them
//! ([`SinkCapabilities::conditional_put`](stoa_backup_core::sink::SinkCapabilities)):
//! create-if-absent, compare-and-swap against the version read, and one winner among
//! concurrent swaps from one version.

use bytes::Bytes;
use stoa_backup_core::sink::{ObjectVersion, PutCondition, PutOutcome, Sink, VersionedObject};

use super::Cx;

impl<S: Sink + ?Sized> Cx<'_, S> {
    async fn put_if(&self, key: &str, bytes: &'static [u8], c: PutCondition) -> PutOutcome {
        let key = self.key(key);
        match self.sink.put_if(&key, Bytes::from_static(bytes), c).await {
            Ok(o) => o,
            Err(e) => self.fail(&format!("put_if of {key}"), &e),
        }
    }

    async fn versioned(&self, key: &str) -> Option<VersionedObject> {
        let key = self.key(key);
        match self.sink.get_versioned(&key).await {
            Ok(o) => o,
            Err(e) => self.fail(&format!("get_versioned of {key}"), &e),
        }
    }

    pub(super) async fn conditional_puts(&self) {
        let name = &self.name;
        let k = "conditional/lease.json";
        assert_eq!(
            self.versioned(k).await,
            None,
            "sink conformance ({name}): a missing object has a version"
        );
        let PutOutcome::Written(v1) = self.put_if(k, b"one", PutCondition::Absent).await else {
            panic!("sink conformance ({name}): a create of a missing object was refused")
        };
        assert_eq!(
            self.put_if(k, b"two", PutCondition::Absent).await,
            PutOutcome::ConditionFailed,
            "sink conformance ({name}): a create of an existing object was accepted"
        );
        let now = self.versioned(k).await.expect("the object just created");
        assert_eq!(
            (&now.bytes[..], &now.version),
            (&b"one"[..], &v1),
            "sink conformance ({name})"
        );
        let PutOutcome::Written(v2) = self
            .put_if(k, b"two", PutCondition::Matches(v1.clone()))
            .await
        else {
            panic!("sink conformance ({name}): a swap from the current version was refused")
        };
        assert_ne!(
            v1, v2,
            "sink conformance ({name}): new content, same version"
        );
        for stale in [v1, ObjectVersion::new("not-a-version-of-this-sink")] {
            assert_eq!(
                self.put_if(k, b"three", PutCondition::Matches(stale)).await,
                PutOutcome::ConditionFailed,
                "sink conformance ({name}): a swap from a stale version was accepted"
            );
        }
        assert_eq!(
            &self.versioned(k).await.unwrap().bytes[..],
            b"two",
            "sink conformance ({name})"
        );

        // Swaps racing from one version: exactly one wins, and it is what is stored.
        const BODIES: [&[u8]; 6] = [b"r0", b"r1", b"r2", b"r3", b"r4", b"r5"];
        let outcomes = futures::future::join_all(
            BODIES
                .iter()
                .map(|b| self.put_if(k, b, PutCondition::Matches(v2.clone()))),
        )
        .await;
        let won: Vec<(usize, &ObjectVersion)> = outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                PutOutcome::Written(v) => Some((i, v)),
                PutOutcome::ConditionFailed => None,
            })
            .collect();
        assert_eq!(
            won.len(),
            1,
            "sink conformance ({name}): racing swaps won: {won:?}"
        );
        let now = self.versioned(k).await.unwrap();
        assert_eq!(
            (&now.bytes[..], &now.version),
            (BODIES[won[0].0], won[0].1),
            "sink conformance ({name})"
        );
        let missing = ObjectVersion::new("x");
        assert_eq!(
            self.put_if(
                "conditional/missing.json",
                b"x",
                PutCondition::Matches(missing)
            )
            .await,
            PutOutcome::ConditionFailed,
            "sink conformance ({name}): a swap of a missing object was accepted"
        );
    }
}
