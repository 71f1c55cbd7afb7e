//! `replicate_to:`: the storage targets a component's complete, verified runs are copied to
//! after each backup. At the top level it applies to every component (each one's own target
//! left out of its list); a component's own `replicate_to` replaces it (`[]`: no copies).

use serde_saphyr::{Location, Spanned};

use super::{Resolver, Result};
use crate::config::model::Target;
use crate::config::raw::RawReplicateTo;

impl Resolver<'_> {
    /// The top level's `replicate_to`: defined targets, each named once.
    pub(super) fn global_replicas(
        &self,
        raw: Option<&Spanned<RawReplicateTo>>,
        targets: &[Target],
    ) -> Result<Vec<String>> {
        match raw {
            None => Ok(Vec::new()),
            Some(r) => Ok(self
                .replica_names("replicate_to", r, targets)?
                .into_iter()
                .map(|(name, _)| name)
                .collect()),
        }
    }

    /// Component `prefix`'s replicas: its own `replicate_to` (which may not name its own
    /// `storage`), else the top level's `global` without its own target.
    pub(super) fn component_replicas(
        &self,
        prefix: &str,
        storage: &str,
        raw: Option<&Spanned<RawReplicateTo>>,
        global: &[String],
        targets: &[Target],
    ) -> Result<Vec<String>> {
        let Some(raw) = raw else {
            return Ok(global.iter().filter(|t| *t != storage).cloned().collect());
        };
        let key = format!("{prefix}.replicate_to");
        let names = self.replica_names(&key, raw, targets)?;
        if let Some((own, at)) = names.iter().find(|(n, _)| n == storage) {
            return Err(self
                .err(
                    at,
                    &key,
                    format!("`{own}` is the component's own storage target: its runs are there already"),
                )
                .with_hint("name another storage target (a second region), or write `replicate_to: []` for no copies"));
        }
        Ok(names.into_iter().map(|(name, _)| name).collect())
    }

    /// The names `raw` lists, interpolated, each a defined target named once, with where
    /// each is written.
    fn replica_names(
        &self,
        key: &str,
        raw: &Spanned<RawReplicateTo>,
        targets: &[Target],
    ) -> Result<Vec<(String, Location)>> {
        let written: Vec<(String, Location)> = match &raw.value {
            RawReplicateTo::One(name) => vec![(name.clone(), raw.referenced)],
            RawReplicateTo::Many(names) => names
                .iter()
                .map(|t| (t.value.clone(), t.referenced))
                .collect(),
        };
        let mut out: Vec<(String, Location)> = Vec::new();
        for (value, at) in written {
            let name = self.text(&Spanned::new(value, at, at), key)?;
            if !targets.iter().any(|t| t.name == name) {
                let known: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
                return Err(self
                    .err(&at, key, format!("no storage target is named `{name}`"))
                    .with_hint(if known.is_empty() {
                        "define it under `storage:`".to_string()
                    } else {
                        format!("the targets are: {}", known.join(", "))
                    }));
            }
            if out.iter().any(|(n, _)| *n == name) {
                return Err(self.err(&at, key, format!("names `{name}` twice")));
            }
            out.push((name, at));
        }
        Ok(out)
    }
}
