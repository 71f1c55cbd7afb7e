//! How a command ended: its exit status and the `verdict` of its JSON document.

use std::process::ExitCode;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done (exit 0).
    Success,
    /// Nothing of it was (exit 1).
    Failed,
    /// The command line or the configuration is wrong (exit 2).
    Usage,
    /// Some components failed, the others succeeded (exit 3).
    Partial,
    /// A stored backup did not pass its checks (exit 4).
    VerificationFailed,
    /// A signal stopped it: 130 for SIGINT, 143 for SIGTERM.
    Interrupted(u8),
}

impl Outcome {
    /// The exit status.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failed => 1,
            Outcome::Usage => 2,
            Outcome::Partial => 3,
            Outcome::VerificationFailed => 4,
            Outcome::Interrupted(status) => status,
        }
    }

    /// The `verdict` of the JSON document.
    pub fn verdict(self) -> &'static str {
        match self {
            Outcome::Success => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Usage => "invalid",
            Outcome::Partial => "partially_failed",
            Outcome::VerificationFailed => "verification_failed",
            Outcome::Interrupted(_) => "interrupted",
        }
    }

    /// Of several results: success when all succeeded, failed when none did, else partial.
    pub fn of(results: impl IntoIterator<Item = Outcome>) -> Outcome {
        let (mut ok, mut bad, mut partial) = (0, 0, 0);
        for r in results {
            match r {
                Outcome::Success => ok += 1,
                Outcome::Partial => partial += 1,
                _ => bad += 1,
            }
        }
        match (ok, bad, partial) {
            (_, 0, 0) => Outcome::Success,
            (0, _, 0) => Outcome::Failed,
            _ => Outcome::Partial,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        ExitCode::from(o.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    #[test]
    fn a_mixed_result_is_partial_and_never_success() {
        assert_eq!(Outcome::of([Success, Success]), Success);
        assert_eq!(Outcome::of([Failed, Failed]), Failed);
        assert_eq!(Outcome::of([Success, Failed]), Partial);
        assert_eq!(Outcome::of([Partial]), Partial);
        assert_eq!(Outcome::of([Failed, Partial]), Partial);
        assert_eq!(Outcome::of([]), Success);
        assert_eq!(
            [
                Success,
                Failed,
                Usage,
                Partial,
                VerificationFailed,
                Interrupted(130),
                Interrupted(143)
            ]
            .map(Outcome::code),
            [0, 1, 2, 3, 4, 130, 143]
        );
    }
}
