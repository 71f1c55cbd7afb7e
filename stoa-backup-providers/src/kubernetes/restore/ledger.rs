//! What happened to every object of a restore: the report's counts, notes and typed facts,
//! and — when objects failed — the one error that says exactly which objects were applied,
//! which failed and why, and which were not attempted.

use serde_json::Value;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::restore::RestoreReport;
use stoa_backup_core::source::to_facts;

use super::super::facts::{
    CustomResourcesRestoreFacts, FieldCause, ObjectAction, ObjectOutcome, ObjectRestore,
};
use super::super::object_name;
use super::FailurePolicy;

/// An object the API server (or the restorer, for a kind nobody serves) refused, with the
/// error as the operator reads it and the fields the server named.
pub(super) struct Rejection {
    pub error: Error,
    /// The server's own message (`Tool.gostoa.dev "x" is invalid: …`) and status.
    pub reason: String,
    pub causes: Vec<FieldCause>,
}

impl Rejection {
    /// A rejection the restorer finds itself (no API answer).
    pub fn own(error: Error) -> Self {
        Rejection {
            reason: error.message().to_string(),
            error,
            causes: Vec::new(),
        }
    }
}

pub(super) struct Ledger {
    dry_run: bool,
    policy: FailurePolicy,
    report: RestoreReport,
    objects: Vec<ObjectRestore>,
    /// The errors of failed objects, by their index in `objects`.
    failures: Vec<(usize, Error)>,
}

fn entry(o: &Value, action: Option<ObjectAction>, outcome: ObjectOutcome) -> ObjectRestore {
    let n = object_name(o);
    ObjectRestore {
        kind: n.kind.to_string(),
        namespace: n.namespace.filter(|ns| !ns.is_empty()).map(str::to_string),
        name: n.name.to_string(),
        action,
        outcome,
        reason: None,
        http_status: None,
        causes: Vec::new(),
    }
}

impl Ledger {
    pub fn new(dry_run: bool, policy: FailurePolicy) -> Self {
        Ledger {
            dry_run,
            policy,
            report: RestoreReport {
                dry_run,
                ..RestoreReport::default()
            },
            objects: Vec::new(),
            failures: Vec::new(),
        }
    }

    pub fn note(&mut self, note: String) {
        self.report.notes.push(note);
    }

    /// Whether the apply stopped at a failure: what follows is not attempted.
    pub fn stopped(&self) -> bool {
        self.policy == FailurePolicy::Stop && !self.failures.is_empty()
    }

    /// The server accepted the object (in a plan: its dry run), with this action.
    pub fn accepted(&mut self, o: &Value, action: ObjectAction) {
        let outcome = if self.dry_run {
            ObjectOutcome::Validated
        } else {
            ObjectOutcome::Applied
        };
        let label = object_name(o).to_string();
        let note = match action {
            ObjectAction::Create => {
                self.report.created += 1;
                format!("create {label}")
            }
            ObjectAction::Update => {
                self.report.updated += 1;
                format!("update {label}")
            }
            ObjectAction::Unchanged => {
                self.report.skipped += 1;
                format!("unchanged {label}")
            }
            ObjectAction::Skip => {
                self.report.skipped += 1;
                format!("skip {label} (exists)")
            }
            ObjectAction::Conflict => {
                self.report.conflicts += 1;
                format!("conflict {label} (exists in the target and differs from the backup)")
            }
        };
        self.report.notes.push(note);
        self.objects.push(entry(o, Some(action), outcome));
    }

    /// Plan: the object cannot be checked before the restore creates what it needs; it
    /// would be created.
    pub fn cannot_validate(&mut self, o: &Value, reason: String) {
        self.report.created += 1;
        self.report
            .notes
            .push(format!("create {} ({reason})", object_name(o)));
        let mut e = entry(o, Some(ObjectAction::Create), ObjectOutcome::CannotValidate);
        e.reason = Some(reason);
        self.objects.push(e);
    }

    /// The server refused the object (in a plan: its dry run).
    pub fn rejected(&mut self, o: &Value, action: Option<ObjectAction>, r: Rejection) {
        let label = object_name(o).to_string();
        let (outcome, word) = if self.dry_run {
            (ObjectOutcome::Rejected, "rejected")
        } else {
            (ObjectOutcome::Failed, "failed")
        };
        self.report
            .notes
            .push(format!("{word} {label}: {}", r.reason));
        let mut e = entry(o, action, outcome);
        e.reason = Some(r.reason);
        e.http_status = r.error.http_status();
        e.causes = r.causes;
        self.objects.push(e);
        if !self.dry_run {
            self.failures.push((self.objects.len() - 1, r.error));
        }
    }

    /// Apply: not tried, as the restore stopped at an earlier failure.
    pub fn not_attempted(&mut self, o: &Value) {
        let stopped_at = self
            .failures
            .first()
            .map(|(i, _)| self.objects[*i].label())
            .unwrap_or_default();
        let reason = format!("the restore stopped at {stopped_at}");
        self.report
            .notes
            .push(format!("not attempted {} ({reason})", object_name(o)));
        let mut e = entry(o, None, ObjectOutcome::NotAttempted);
        e.reason = Some(reason);
        self.objects.push(e);
    }

    fn labels(&self, pick: impl Fn(&ObjectRestore) -> bool) -> Vec<String> {
        self.objects
            .iter()
            .filter(|o| pick(o))
            .map(ObjectRestore::label)
            .collect()
    }

    /// Objects written by this apply (created or updated).
    fn written(&self) -> Vec<String> {
        self.labels(|o| {
            o.outcome == ObjectOutcome::Applied
                && matches!(o.action, Some(ObjectAction::Create | ObjectAction::Update))
        })
    }

    /// An error that ends the restore whatever the policy (the server unreachable, a CRD
    /// never Established, cancellation), saying what was written before it.
    pub fn fatal(&self, e: Error) -> Error {
        let written = self.written();
        if self.dry_run || written.is_empty() {
            return e;
        }
        e.with_context("applied before it", written.join(", "))
    }

    /// The report, or — when objects failed — the error listing what was applied, each
    /// failure with its reason, and what was not attempted.
    pub fn finish(mut self) -> Result<RestoreReport> {
        if self.failures.is_empty() {
            self.report.facts = to_facts(&CustomResourcesRestoreFacts {
                objects: self.objects,
            })?;
            return Ok(self.report);
        }
        let written = self.written();
        let left_alone = self.labels(|o| {
            o.outcome == ObjectOutcome::Applied
                && matches!(o.action, Some(ObjectAction::Unchanged | ObjectAction::Skip))
        });
        let not_attempted = self.labels(|o| o.outcome == ObjectOutcome::NotAttempted);
        let failed: Vec<String> = self
            .failures
            .iter()
            .map(|(i, e)| format!("{}: {}", self.objects[*i].label(), e.message()))
            .collect();
        let total = self.objects.len();
        let (first_index, first) = self.failures.remove(0);
        let kinds_agree = self.failures.iter().all(|(_, e)| e.kind() == first.kind());
        let mut err = if self.policy == FailurePolicy::Stop {
            Error::new(
                first.kind(),
                format!(
                    "{}; the restore stopped there: {} of {total} objects applied before it, {} left as they were, {} not attempted",
                    first.message(),
                    written.len(),
                    left_alone.len(),
                    not_attempted.len(),
                ),
            )
        } else {
            let kind = if kinds_agree {
                first.kind()
            } else {
                ErrorKind::Restore
            };
            Error::new(
                kind,
                format!(
                    "{} of {total} objects failed: {}; {} applied, {} left as they were",
                    failed.len(),
                    failed.join("; "),
                    written.len(),
                    left_alone.len(),
                ),
            )
        };
        if let Some(code) = first.http_status() {
            if self.failures.is_empty() || self.policy == FailurePolicy::Stop {
                err = err.with_http_status(code);
            }
        }
        err = err.with_context("applied", list_or_none(&written));
        if self.policy == FailurePolicy::Stop {
            err = err
                .with_context("failed", self.objects[first_index].label())
                .with_context("not attempted", list_or_none(&not_attempted));
        }
        let hint = match first.hint() {
            Some(h) if self.failures.is_empty() || self.policy == FailurePolicy::Stop => {
                h.to_string()
            }
            _ => "fix the failed objects (in the backup, or the CRD schema they are checked against) and restore again: what was applied stays in place and a new run finds it unchanged".to_string(),
        };
        Err(err.with_hint(hint))
    }
}

fn list_or_none(labels: &[String]) -> String {
    if labels.is_empty() {
        "none".to_string()
    } else {
        labels.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str) -> Value {
        json!({"apiVersion": "gostoa.dev/v1alpha1", "kind": "Tool",
               "metadata": {"name": name, "namespace": "t"}})
    }

    fn invalid(name: &str) -> Rejection {
        Rejection {
            error: Error::new(
                ErrorKind::Restore,
                format!("apply Tool t/{name}: Tool.gostoa.dev \"{name}\" is invalid: spec.endpoint: Required value (422 Invalid)"),
            )
            .with_http_status(422),
            reason: format!("Tool.gostoa.dev \"{name}\" is invalid: spec.endpoint: Required value (422 Invalid)"),
            causes: vec![FieldCause {
                field: "spec.endpoint".into(),
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
            }],
        }
    }

    #[test]
    fn stop_names_what_was_applied_the_failure_and_what_was_left() {
        let mut l = Ledger::new(false, FailurePolicy::Stop);
        l.accepted(&tool("a"), ObjectAction::Create);
        l.accepted(&tool("b"), ObjectAction::Unchanged);
        l.rejected(&tool("c"), Some(ObjectAction::Create), invalid("c"));
        assert!(l.stopped());
        l.not_attempted(&tool("d"));
        let e = l.finish().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Restore);
        assert_eq!(e.http_status(), Some(422));
        let msg = e.to_string();
        assert!(
            msg.contains("apply Tool t/c: Tool.gostoa.dev \"c\" is invalid"),
            "{msg}"
        );
        assert!(
            msg.contains("1 of 4 objects applied before it, 1 left as they were, 1 not attempted"),
            "{msg}"
        );
        assert_eq!(e.context_value("applied"), Some("Tool t/a"));
        assert_eq!(e.context_value("failed"), Some("Tool t/c"));
        assert_eq!(e.context_value("not attempted"), Some("Tool t/d"));
    }

    #[test]
    fn continue_lists_every_failure_and_a_plan_reports_them() {
        let mut l = Ledger::new(false, FailurePolicy::Continue);
        l.rejected(&tool("a"), Some(ObjectAction::Create), invalid("a"));
        assert!(!l.stopped());
        l.accepted(&tool("b"), ObjectAction::Create);
        l.rejected(
            &tool("c"),
            Some(ObjectAction::Update),
            Rejection::own(Error::new(ErrorKind::Conflict, "Tool t/c differs")),
        );
        let e = l.finish().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Restore, "two kinds of failure: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains("2 of 3 objects failed: Tool t/a: apply Tool t/a"),
            "{msg}"
        );
        assert!(
            msg.contains("; Tool t/c: Tool t/c differs; 1 applied"),
            "{msg}"
        );
        assert_eq!(e.context_value("applied"), Some("Tool t/b"));

        let mut plan = Ledger::new(true, FailurePolicy::Stop);
        plan.rejected(&tool("a"), Some(ObjectAction::Create), invalid("a"));
        assert!(!plan.stopped(), "a plan reports every rejection");
        plan.cannot_validate(
            &tool("b"),
            "cannot validate yet: CRD tools.gostoa.dev not installed".into(),
        );
        let r = plan.finish().unwrap();
        assert_eq!(r.created, 1);
        let f = CustomResourcesRestoreFacts::of(&r).unwrap();
        assert_eq!(f.objects[0].outcome, ObjectOutcome::Rejected);
        assert_eq!(f.objects[0].causes[0].field, "spec.endpoint");
        assert_eq!(f.objects[0].http_status, Some(422));
        assert_eq!(f.objects[1].outcome, ObjectOutcome::CannotValidate);
        assert_eq!(
            r.notes[1],
            "create Tool t/b (cannot validate yet: CRD tools.gostoa.dev not installed)"
        );
    }
}
