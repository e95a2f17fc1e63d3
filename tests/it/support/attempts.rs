//! Repeating a timed check whose time was not judged. A check made a minute after its own
//! recording judges no time when the machine's references moved beyond the timing model in
//! between (a host whose CPU speed changed for a while: x2.1 in one CI run). Such an attempt
//! says nothing either way, so it is repeated, and each repeat is printed. A pass or a failure
//! is never repeated.

use std::future::Future;

/// Attempts before the test gives up.
pub const ATTEMPTS: usize = 3;

/// Runs `attempt` until `unjudged` names no case of its outcome whose time went unjudged, at
/// most [`ATTEMPTS`] times; panics naming `what` if none was judged.
pub async fn until_judged<T, F, Fut>(
    what: &str,
    mut attempt: F,
    unjudged: impl Fn(&T) -> Vec<String>,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    for n in 1..=ATTEMPTS {
        let outcome = attempt().await;
        let cases = unjudged(&outcome);
        if cases.is_empty() {
            return outcome;
        }
        // Straight to the process's stderr, so that a repeat shows in CI's log even when the
        // test passes (libtest captures eprint!).
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "{what}: attempt {n} of {ATTEMPTS} inconclusive, time not judged for {cases:?} \
             (the references moved between recording and checking); repeating"
        );
    }
    panic!(
        "{what}: {ATTEMPTS} attempts in a row judged no time: this machine's references move \
         too much between two runs a minute apart"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unjudged_until_third(n: &usize) -> Vec<String> {
        if *n < 3 {
            vec![format!("case {n}")]
        } else {
            Vec::new()
        }
    }

    #[tokio::test]
    async fn an_unjudged_attempt_is_repeated_and_the_first_judged_one_kept() {
        let mut tried = 0;
        let kept = until_judged(
            "support::attempts self-test",
            || {
                tried += 1;
                std::future::ready(tried)
            },
            unjudged_until_third,
        )
        .await;
        assert_eq!(kept, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "(never judged): 3 attempts in a row judged no time")]
    async fn attempts_that_are_never_judged_fail_the_test() {
        until_judged(
            "support::attempts self-test (never judged)",
            || std::future::ready(0),
            unjudged_until_third,
        )
        .await;
    }
}
