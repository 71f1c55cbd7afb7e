//! One object: read the live one, run the apply as a server-side dry run (the API server
//! validates it and shows what it would store), then apply it unless this is a dry run.
//! Rejections of the object go to the ledger; failures that are not about the object come
//! back as errors.

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{json, Value};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::restore::{ExistingDataPolicy, RestoreOptions};

use super::super::facts::{FieldCause, ObjectAction};
use super::super::strip::{strip_object, StripRules};
use super::super::{kube_error, object_name};
use super::ledger::{Ledger, Rejection};
use super::{ConflictPolicy, CustomResourcesRestorer};

/// An object the server accepted (the ledger has what was done): the object as the target
/// held it before.
pub(super) struct Accepted {
    pub live: Option<DynamicObject>,
}

/// `(kind, namespace, name)` of every object in the backup.
pub(super) type BackupKeys = BTreeSet<(String, String, String)>;

pub(super) fn key_of(o: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&o["kind"]),
        s(&o["metadata"]["namespace"]),
        s(&o["metadata"]["name"]),
    )
}

/// Status codes that reject one object (it is invalid, conflicts, needs a namespace or kind
/// the target lacks, or may not be written): the failure policy decides what follows. Any
/// other failure ends the restore.
fn rejects_the_object(code: u16) -> bool {
    matches!(code, 400 | 403 | 404 | 409 | 422)
}

/// A kube error about `what` (`apply Tool t/w`): the object's rejection, or an error that
/// ends the restore.
pub(super) fn rejection(err: kube::Error, what: &str) -> std::result::Result<Rejection, Error> {
    let (reason, causes, conflict) = match &err {
        kube::Error::Api(s) if rejects_the_object(s.code) => {
            let causes = s
                .details
                .as_ref()
                .map(|d| {
                    d.causes
                        .iter()
                        .map(|c| FieldCause {
                            field: c.field.clone(),
                            reason: c.reason.clone(),
                            message: c.message.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                format!("{} ({} {})", s.message, s.code, s.reason),
                causes,
                s.code == 409,
            )
        }
        _ => return Err(kube_error(err, what)),
    };
    let mut error = kube_error(err, what);
    if conflict {
        error = error.with_hint("another field manager owns these fields: resolve the difference, or restore with the Force conflict policy to take them over");
    }
    Ok(Rejection {
        error,
        reason,
        causes,
    })
}

/// An object without server-populated fields and status, for change detection.
fn comparable(o: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    strip_object(&mut v, &StripRules::minimal());
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("ownerReferences");
    }
    v
}

impl CustomResourcesRestorer {
    /// Restores one object through `api`: the live object is read, the apply dry-run (the
    /// server validates it and shows the result), compared, and — unless this is a dry run
    /// or nothing would change — applied. Returns what was done when the object was
    /// accepted, `None` when it was rejected (recorded in the ledger).
    pub(super) async fn apply_object(
        &self,
        api: &Api<DynamicObject>,
        body: &Value,
        options: &RestoreOptions,
        ledger: &mut Ledger,
    ) -> Result<Option<Accepted>> {
        let label = object_name(body).to_string();
        let name = body["metadata"]["name"].as_str().unwrap_or_default();
        let live = match api.get_opt(name).await {
            Ok(live) => live,
            Err(e) => {
                let r = rejection(e, &format!("get {label}")).map_err(|e| ledger.fatal(e))?;
                ledger.rejected(body, None, r);
                return Ok(None);
            }
        };
        if live.is_some() && options.existing == ExistingDataPolicy::Skip {
            ledger.accepted(body, ObjectAction::Skip);
            return Ok(Some(Accepted { live }));
        }
        let planned = if live.is_some() {
            ObjectAction::Update
        } else {
            ObjectAction::Create
        };
        let obj: DynamicObject = match serde_json::from_value(body.clone()) {
            Ok(o) => o,
            Err(e) => {
                let e = Error::integrity(format!("{label} is not a valid object: {e}"));
                ledger.rejected(body, Some(planned), Rejection::own(e));
                return Ok(None);
            }
        };
        let mut pp = PatchParams::apply(&self.field_manager);
        if self.conflicts == ConflictPolicy::Force {
            pp = pp.force();
        }
        let what = format!("apply {label}");
        let preview = match api
            .patch(name, &pp.clone().dry_run(), &Patch::Apply(&obj))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let r = rejection(e, &what).map_err(|e| ledger.fatal(e))?;
                ledger.rejected(body, Some(planned), r);
                return Ok(None);
            }
        };
        let action = match &live {
            None => ObjectAction::Create,
            Some(live) if comparable(live) == comparable(&preview) => ObjectAction::Unchanged,
            Some(_) => ObjectAction::Update,
        };
        if action == ObjectAction::Update && options.existing == ExistingDataPolicy::Fail {
            if options.dry_run {
                ledger.accepted(body, ObjectAction::Conflict);
                return Ok(Some(Accepted { live }));
            }
            let e = Error::new(
                ErrorKind::Conflict,
                format!("{label} exists in the target and differs from the backup"),
            )
            .with_hint("restore with the overwrite policy to apply the backup over it, or skip to leave existing objects alone");
            ledger.rejected(body, Some(ObjectAction::Conflict), Rejection::own(e));
            return Ok(None);
        }
        if !options.dry_run && action != ObjectAction::Unchanged {
            if let Err(e) = api.patch(name, &pp, &Patch::Apply(&obj)).await {
                let r = rejection(e, &what).map_err(|e| ledger.fatal(e))?;
                ledger.rejected(body, Some(action), r);
                return Ok(None);
            }
        }
        ledger.accepted(body, action);
        Ok(Some(Accepted { live }))
    }

    /// Rewrites owner UIDs to the target's and drops references to owners absent from it.
    /// In a plan, a reference to an owner the restore creates first is kept as it is.
    pub(super) async fn fix_owner_references(
        &self,
        body: &mut Value,
        ns: Option<&str>,
        options: &RestoreOptions,
        in_backup: &BackupKeys,
        ledger: &mut Ledger,
    ) -> Result<()> {
        let Some(refs) = body["metadata"]["ownerReferences"].as_array().cloned() else {
            return Ok(());
        };
        let label = object_name(body).to_string();
        let mut kept = Vec::new();
        for mut r in refs {
            let (av, kind, name) = (
                r["apiVersion"].as_str().unwrap_or_default().to_string(),
                r["kind"].as_str().unwrap_or_default().to_string(),
                r["name"].as_str().unwrap_or_default().to_string(),
            );
            let resolved = self
                .resolve(&av, &kind, false)
                .await
                .map_err(|e| ledger.fatal(e))?;
            let owner = match resolved {
                Some(res) => {
                    let api: Api<DynamicObject> = match (res.namespaced, ns) {
                        (true, Some(ns)) => {
                            Api::namespaced_with(self.client.0.clone(), ns, &res.ar)
                        }
                        _ => Api::all_with(self.client.0.clone(), &res.ar),
                    };
                    api.get_opt(&name).await.map_err(|e| {
                        ledger.fatal(kube_error(
                            e,
                            &format!("get owner {kind} {name} of {label}"),
                        ))
                    })?
                }
                None => None,
            };
            let owner_ns = ns.unwrap_or_default().to_string();
            let restored_first = in_backup.contains(&(kind.clone(), owner_ns, name.clone()))
                || in_backup.contains(&(kind.clone(), String::new(), name.clone()));
            match owner.and_then(|o| o.metadata.uid) {
                Some(uid) => {
                    r["uid"] = json!(uid);
                    kept.push(r);
                }
                None if options.dry_run && restored_first => {
                    ledger.note(format!(
                        "{label}: its ownerReference to {kind} {name} will point at the restored owner"
                    ));
                    kept.push(r);
                }
                None => {
                    let msg = format!(
                        "warning: {label}: dropped ownerReference to {kind} {name} (absent in the target; the garbage collector would delete the restored object)"
                    );
                    tracing::warn!("{msg}");
                    ledger.note(msg);
                }
            }
        }
        if let Some(meta) = body["metadata"].as_object_mut() {
            if kept.is_empty() {
                meta.remove("ownerReferences");
            } else {
                meta.insert("ownerReferences".into(), Value::Array(kept));
            }
        }
        Ok(())
    }
}
