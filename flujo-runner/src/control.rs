//! Control-flow steps: `loop_until`, `branch_on`, `parallel` and `map_over`.

use crate::context::Frame;
use crate::error::Failure;
use crate::result::StepKind;
use crate::step::{Body, IntoStep, Step};
use futures::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

/// Starts a step that runs `body` again on its own output until `until(output, context)`
/// holds; [`LoopUntil::max_iterations`] bounds it and makes it a step. Each iteration is a
/// child execution of `body` whose `step_index` is the iteration number (0-based). Reaching the
/// limit without the condition holding fails the step.
///
/// For a body of several steps, pass [`Pipeline::into_step`](crate::Pipeline::into_step).
///
/// ```
/// use flujo_runner::{loop_until, step, StepContext};
///
/// let double = step("double", |n: u32, _cx: StepContext<()>| async move { Ok(n * 2) });
/// let grow = loop_until("grow", double, |n: &u32, _: &()| *n >= 100).max_iterations(10);
/// # let _ = grow;
/// ```
pub fn loop_until<T, C, B, F>(name: impl Into<String>, body: B, until: F) -> LoopUntil<T, C, F>
where
    B: IntoStep<C, In = T, Out = T>,
    F: Fn(&T, &C) -> bool + Send + Sync + 'static,
{
    LoopUntil {
        name: name.into().into(),
        body: body.into_step(),
        until,
    }
}

/// A loop under construction, built by [`loop_until`]; [`max_iterations`](LoopUntil::max_iterations)
/// makes it a step.
pub struct LoopUntil<T, C, F> {
    name: Arc<str>,
    body: Step<T, T, C>,
    until: F,
}

impl<T, C, F> LoopUntil<T, C, F>
where
    T: Serialize + Send + 'static,
    C: Send + 'static,
    F: Fn(&T, &C) -> bool + Send + Sync + 'static,
{
    /// The step, running the body at most `max_iterations` times. A limit of 0 cannot run
    /// anything: such a step fails when it runs, with
    /// `step '<name>' has max_iterations 0: a loop needs at least 1 iteration`.
    pub fn max_iterations(self, max_iterations: u32) -> Step<T, T, C> {
        let LoopUntil { name, body, until } = self;
        let body = Arc::new(body);
        let until = Arc::new(until);
        let loop_name = name.clone();
        let run: Body<T, T, C> = Arc::new(move |input, frame: Frame<C>| {
            let body = body.clone();
            let until = until.clone();
            let name = loop_name.clone();
            Box::pin(async move {
                if max_iterations == 0 {
                    return Err(Failure::of_message(format!(
                        "step '{name}' has max_iterations 0: a loop needs at least 1 iteration"
                    )));
                }
                let mut current = input;
                for iteration in 0..max_iterations {
                    let output = body.execute(current, &frame, u64::from(iteration)).await?;
                    let done = frame
                        .run
                        .with_context(|context| until(&output, context))
                        .map_err(|error| {
                            Failure::of_message(format!(
                                "step '{name}' could not check its exit condition: {error}"
                            ))
                        })?;
                    if done {
                        return Ok(output);
                    }
                    current = output;
                }
                Err(Failure::of_message(format!(
                    "step '{name}' reached its limit of {max_iterations} iterations without \
                     meeting its exit condition: raise max_iterations or check the condition"
                )))
            })
        });
        Step::from_body(name, StepKind::Loop, run)
    }
}

/// Computes a branch key from a step's input and the context.
type KeyFn<In, C, K> = Arc<dyn Fn(&In, &C) -> K + Send + Sync>;

/// A step that picks one of several branches by a key computed from its input and the context;
/// built by [`branch_on`]. The branch taken is its child, at `step_index` 0.
pub struct BranchOn<In, Out, C, K> {
    name: Arc<str>,
    key: KeyFn<In, C, K>,
    branches: HashMap<K, Arc<Step<In, Out, C>>>,
    otherwise: Option<Arc<Step<In, Out, C>>>,
}

/// Starts a conditional step: `key(input, context)` chooses the branch added with
/// [`BranchOn::branch`]; a key with no branch runs [`BranchOn::otherwise`], or fails the step
/// when there is none.
pub fn branch_on<In, Out, C, K, F>(name: impl Into<String>, key: F) -> BranchOn<In, Out, C, K>
where
    F: Fn(&In, &C) -> K + Send + Sync + 'static,
{
    BranchOn {
        name: name.into().into(),
        key: Arc::new(key),
        branches: HashMap::new(),
        otherwise: None,
    }
}

impl<In, Out, C, K: Eq + Hash> BranchOn<In, Out, C, K> {
    /// Runs `step` when the key is `key` (replacing an earlier branch for the same key).
    pub fn branch(mut self, key: K, step: impl IntoStep<C, In = In, Out = Out>) -> Self {
        self.branches.insert(key, Arc::new(step.into_step()));
        self
    }

    /// Runs `step` when the key has no branch.
    pub fn otherwise(mut self, step: impl IntoStep<C, In = In, Out = Out>) -> Self {
        self.otherwise = Some(Arc::new(step.into_step()));
        self
    }
}

impl<In, Out, C, K> IntoStep<C> for BranchOn<In, Out, C, K>
where
    In: Serialize + Send + 'static,
    Out: Serialize + Send + 'static,
    C: Send + 'static,
    K: Eq + Hash + Debug + Send + Sync + 'static,
{
    type In = In;
    type Out = Out;

    fn into_step(self) -> Step<In, Out, C> {
        let BranchOn {
            name,
            key,
            branches,
            otherwise,
        } = self;
        let branches = Arc::new(branches);
        let branch_name = name.clone();
        let run: Body<In, Out, C> = Arc::new(move |input, frame: Frame<C>| {
            let key = key.clone();
            let branches = branches.clone();
            let otherwise = otherwise.clone();
            let name = branch_name.clone();
            Box::pin(async move {
                let chosen = frame
                    .run
                    .with_context(|context| key(&input, context))
                    .map_err(|error| {
                        Failure::of_message(format!(
                            "step '{name}' could not compute its branch key: {error}"
                        ))
                    })?;
                let Some(branch) = branches.get(&chosen).or(otherwise.as_ref()) else {
                    return Err(Failure::of_message(format!(
                        "step '{name}' has no branch for key {chosen:?} and no default: \
                         add a branch for it or an otherwise step"
                    )));
                };
                branch.execute(input, &frame, 0).await
            })
        });
        Step::from_body(name, StepKind::Branch, run)
    }
}

/// A step that runs its branches concurrently on clones of its input, then combines their
/// outputs; built by [`parallel`]. Branch `i` is a child at `step_index` `i`.
pub struct Parallel<In, O, C> {
    name: Arc<str>,
    branches: Vec<Step<In, O, C>>,
}

/// Starts a step running branches of one output type concurrently (in the caller's task, so the
/// branches interleave at their `.await` points). Every branch runs to its end; the step fails
/// with the first failed branch's error (by branch order). As a step its output is the branches'
/// outputs in branch order; [`Parallel::combine`] turns them into one value. For 2 to 4
/// branches of different output types, [`join`] returns a tuple.
pub fn parallel<In, O, C>(name: impl Into<String>) -> Parallel<In, O, C> {
    Parallel {
        name: name.into().into(),
        branches: Vec::new(),
    }
}

impl<In, O, C> Parallel<In, O, C>
where
    In: Clone + Serialize + Send + 'static,
    O: Serialize + Send + 'static,
    C: Send + 'static,
{
    /// Adds a branch.
    pub fn branch(mut self, step: impl IntoStep<C, In = In, Out = O>) -> Self {
        self.branches.push(step.into_step());
        self
    }

    /// The step, its output the branches' outputs (in branch order) combined by `combine`.
    pub fn combine<R, F>(self, combine: F) -> Step<In, R, C>
    where
        R: Serialize + Send + 'static,
        F: Fn(Vec<O>) -> R + Send + Sync + 'static,
    {
        let branches = Arc::new(self.branches);
        let combine = Arc::new(combine);
        let run: Body<In, R, C> = Arc::new(move |input: In, frame: Frame<C>| {
            let branches = branches.clone();
            let combine = combine.clone();
            Box::pin(async move {
                let runs = branches
                    .iter()
                    .zip(0u64..)
                    .map(|(branch, index)| branch.execute(input.clone(), &frame, index));
                let results = futures::future::join_all(runs).await;
                let outputs = results.into_iter().collect::<Result<Vec<O>, Failure>>()?;
                Ok(combine(outputs))
            })
        });
        Step::from_body(self.name, StepKind::Parallel, run)
    }
}

impl<In, O, C> IntoStep<C> for Parallel<In, O, C>
where
    In: Clone + Serialize + Send + 'static,
    O: Serialize + Send + 'static,
    C: Send + 'static,
{
    type In = In;
    type Out = Vec<O>;

    fn into_step(self) -> Step<In, Vec<O>, C> {
        self.combine(|outputs| outputs)
    }
}

/// A step that runs `step` over each item of its input, at most `concurrency` at a time (0 counts
/// as 1), keeping the items' order in its output. Item `i` is a child at `step_index` `i`. The
/// first failed item fails the step: no new item starts, and items still running are dropped
/// (their spans close `cancelled`).
pub fn map_over<T, U, C, S>(
    name: impl Into<String>,
    step: S,
    concurrency: usize,
) -> Step<Vec<T>, Vec<U>, C>
where
    T: Serialize + Send + 'static,
    U: Serialize + Send + 'static,
    C: Send + 'static,
    S: IntoStep<C, In = T, Out = U>,
{
    let item_step = Arc::new(step.into_step());
    let concurrency = concurrency.max(1);
    let run: Body<Vec<T>, Vec<U>, C> = Arc::new(move |items: Vec<T>, frame: Frame<C>| {
        let item_step = item_step.clone();
        Box::pin(async move {
            let mut outputs = Vec::with_capacity(items.len());
            let runs = futures::stream::iter(items.into_iter().zip(0u64..))
                .map(|(item, index)| item_step.execute(item, &frame, index))
                .buffered(concurrency);
            futures::pin_mut!(runs);
            while let Some(result) = runs.next().await {
                outputs.push(result?);
            }
            Ok(outputs)
        })
    });
    Step::from_body(name.into().into(), StepKind::Map, run)
}

/// A step running 2 to 4 differently typed branches concurrently on clones of its input, its
/// output the tuple of their outputs: `join("retrieve", (search, history))` is a
/// `Step<In, (A, B), C>`. It runs like [`parallel`] (kind `parallel`, branch `i` a child at
/// `step_index` `i`, every branch to its end, the first failed branch by order fails it).
///
/// ```
/// use flujo_runner::{join, step, Flujo, Pipeline, StepContext};
///
/// let count = step("count", |text: String, _cx: StepContext<()>| async move { Ok(text.len()) });
/// let shout = step("shout", |text: String, _cx: StepContext<()>| async move {
///     Ok(text.to_uppercase())
/// });
/// let both = join("both", (count, shout));
/// let result = Flujo::new("join", Pipeline::new(both)).run_blocking("hi".to_owned());
/// assert_eq!(result.output, Some((2, "HI".to_owned())));
/// ```
pub fn join<In, C, B: Join<In, C>>(name: impl Into<String>, branches: B) -> Step<In, B::Out, C> {
    branches.join_step(name.into().into())
}

/// Branches [`join`] can run: tuples of 2 to 4 steps (or control-flow builders) taking the same
/// input.
pub trait Join<In, C>: sealed::Sealed {
    /// The tuple of the branches' outputs.
    type Out;
    #[doc(hidden)]
    fn join_step(self, name: Arc<str>) -> Step<In, Self::Out, C>;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! impl_join {
    ($(($branch:ident, $out:ident, $index:tt)),+; $last:ident, $last_out:ident, $last_index:tt) => {
        impl<$($branch,)+ $last> sealed::Sealed for ($($branch,)+ $last,) {}

        impl<In, C, $($branch,)+ $last> Join<In, C> for ($($branch,)+ $last,)
        where
            In: Clone + Serialize + Send + 'static,
            C: Send + 'static,
            $($branch: IntoStep<C, In = In>, $branch::Out: Serialize + Send + 'static,)+
            $last: IntoStep<C, In = In>,
            $last::Out: Serialize + Send + 'static,
        {
            type Out = ($($branch::Out,)+ $last::Out,);

            fn join_step(self, name: Arc<str>) -> Step<In, Self::Out, C> {
                let branches = Arc::new(($(self.$index.into_step(),)+ self.$last_index.into_step(),));
                let run: Body<In, Self::Out, C> = Arc::new(move |input: In, frame: Frame<C>| {
                    let branches = branches.clone();
                    Box::pin(async move {
                        let ($($out,)+ $last_out,) = futures::join!(
                            $(branches.$index.execute(input.clone(), &frame, $index),)+
                            branches.$last_index.execute(input, &frame, $last_index),
                        );
                        Ok(($($out?,)+ $last_out?,))
                    })
                });
                Step::from_body(name, StepKind::Parallel, run)
            }
        }
    };
}

impl_join!((A, a, 0); B, b, 1);
impl_join!((A, a, 0), (B, b, 1); D, d, 2);
impl_join!((A, a, 0), (B, b, 1), (D, d, 2); E, e, 3);
