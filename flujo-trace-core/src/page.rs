//! How a page of runs is made from a store's two queries, the same for every store: a walk over
//! the runs newest first and a bounded count. Also how a filter's statuses map to stored
//! statuses (`crashed` is stored as `running`, and told apart only by checking the writer).

use crate::process::CRASHED;
use crate::rows::{RunCount, RunFilter, RunPage, RunRecord};

/// A page of only `running` or only `crashed` runs looks at no more than this many runs (or the
/// page's size plus one, when larger): each needs its writer process checked, which SQL cannot do.
pub const RECHECK_BOUND: u64 = 1_000;

/// How a filter's statuses map to a query: the stored statuses to select (`crashed` is stored as
/// `running`), and whether rows must be checked again after reading because exactly one of
/// `running` and `crashed` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPlan {
    /// The stored statuses to select, sorted, without repeats (empty: all).
    pub stored: Vec<String>,
    /// Whether each row's derived status must be compared with the filter after reading.
    pub recheck: bool,
}

impl StatusPlan {
    /// The plan of `statuses`.
    pub fn of(statuses: &[String]) -> StatusPlan {
        let mut stored: Vec<String> = statuses
            .iter()
            .map(|status| {
                if status == CRASHED {
                    "running".to_owned()
                } else {
                    status.clone()
                }
            })
            .collect();
        stored.sort();
        stored.dedup();
        let wants = |s: &str| statuses.iter().any(|status| status == s);
        StatusPlan {
            stored,
            recheck: wants("running") != wants(CRASHED),
        }
    }
}

/// What a store's walk over the runs found.
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    /// The matching runs, newest first.
    pub runs: Vec<RunRecord>,
    /// How many rows were read (and their writers judged).
    pub examined: u64,
    /// Whether the walk read every row its query selects (it stopped neither at `max` nor at
    /// `examine_bound`).
    pub complete: bool,
}

/// The page of runs matching `filter`, newest first, and how many match: counted exactly up to
/// `count_bound`, beyond that "more than `count_bound`". `filter.limit` of `None` returns every
/// matching run.
///
/// `walk(max, examine_bound)` reads up to `max` matching runs newest first (`None`: all),
/// reading at most `examine_bound` rows when set; `count(bound)` counts matching runs, at most
/// `bound + 1`. When exactly one of `running` and `crashed` is asked for, each candidate's writer
/// must be checked: the walk stops after the page and one more run (the count is then "more
/// than the page") or after [`RECHECK_BOUND`] candidates ([`RunPage::stopped_after`]).
pub fn page_of_runs<E>(
    filter: &RunFilter,
    count_bound: u64,
    mut walk: impl FnMut(Option<usize>, Option<u64>) -> Result<Walk, E>,
    count: impl FnOnce(u64) -> Result<u64, E>,
) -> Result<RunPage, E> {
    let exact = |runs: Vec<RunRecord>| {
        let count = runs.len() as u64;
        RunPage {
            runs,
            matching: RunCount { count, exact: true },
            stopped_after: None,
        }
    };
    let Some(limit) = filter.limit else {
        return Ok(exact(walk(None, None)?.runs));
    };
    let page_and_one = limit.saturating_add(1);
    if StatusPlan::of(&filter.statuses).recheck {
        let bound = RECHECK_BOUND.max(page_and_one as u64);
        let walked = walk(Some(page_and_one), Some(bound))?;
        let mut runs = walked.runs;
        if runs.len() > limit {
            runs.truncate(limit);
            return Ok(RunPage {
                runs,
                matching: RunCount {
                    count: limit as u64,
                    exact: false,
                },
                stopped_after: None,
            });
        }
        if walked.complete {
            return Ok(exact(runs));
        }
        let count = runs.len() as u64;
        return Ok(RunPage {
            runs,
            matching: RunCount {
                count,
                exact: false,
            },
            stopped_after: Some(walked.examined),
        });
    }
    let mut runs = walk(Some(page_and_one), None)?.runs;
    if runs.len() <= limit {
        return Ok(exact(runs));
    }
    runs.truncate(limit);
    let bound = count_bound.max(limit as u64 + 1);
    let counted = count(bound)?;
    let matching = if counted > bound {
        RunCount {
            count: bound,
            exact: false,
        }
    } else {
        RunCount {
            count: counted.max(limit as u64 + 1),
            exact: true,
        }
    };
    Ok(RunPage {
        runs,
        matching,
        stopped_after: None,
    })
}

/// The smallest string greater than every string starting with `prefix`, when there is one: a
/// run id prefix is the key range `[prefix, upper bound)`, for every store.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}
