//! `Pipeline`: steps in sequence, their types checked at compile time.

use crate::context::Frame;
use crate::error::Failure;
use crate::result::StepKind;
use crate::step::{Body, IntoStep, Step};
use serde::Serialize;
use std::sync::Arc;

/// Steps run one after the other, each one's output the next one's input; the first failure
/// stops the sequence.
///
/// ```
/// use flujo_runner::{step, Pipeline, StepContext};
///
/// let parse = step("parse", |text: String, _cx: StepContext<()>| async move {
///     Ok(text.trim().parse::<u32>()?)
/// });
/// let double = step("double", |n: u32, _cx: StepContext<()>| async move { Ok(n * 2) });
/// let pipeline: Pipeline<String, u32> = Pipeline::new(parse).then(double);
/// assert_eq!(pipeline.len(), 2);
/// ```
pub struct Pipeline<In, Out, C = ()> {
    run: Body<In, Out, C>,
    n_steps: u64,
}

impl<In, Out, C> Clone for Pipeline<In, Out, C> {
    fn clone(&self) -> Self {
        Pipeline {
            run: self.run.clone(),
            n_steps: self.n_steps,
        }
    }
}

impl<In, Out, C> std::fmt::Debug for Pipeline<In, Out, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("n_steps", &self.n_steps)
            .finish_non_exhaustive()
    }
}

impl<In, Out, C> Pipeline<In, Out, C>
where
    In: Serialize + Send + 'static,
    Out: Serialize + Send + 'static,
    C: Send + 'static,
{
    /// A pipeline of one step.
    pub fn new(first: impl IntoStep<C, In = In, Out = Out>) -> Self {
        let first = Arc::new(first.into_step());
        Pipeline {
            run: Arc::new(move |input, frame: Frame<C>| {
                let first = first.clone();
                Box::pin(async move { first.execute(input, &frame, 0).await })
            }),
            n_steps: 1,
        }
    }

    /// This pipeline followed by `next`, which takes this pipeline's output.
    pub fn then<S>(self, next: S) -> Pipeline<In, S::Out, C>
    where
        S: IntoStep<C, In = Out>,
        S::Out: Serialize + Send + 'static,
    {
        let next = Arc::new(next.into_step());
        let index = self.n_steps;
        let before = self.run;
        Pipeline {
            run: Arc::new(move |input, frame: Frame<C>| {
                let before = before.clone();
                let next = next.clone();
                Box::pin(async move {
                    let middle = before(input, frame.clone()).await?;
                    next.execute(middle, &frame, index).await
                })
            }),
            n_steps: self.n_steps + 1,
        }
    }

    /// This pipeline as one step of kind `pipeline`, so it can run inside another pipeline or a
    /// control-flow step; its steps are the step's children.
    pub fn into_step(self, name: impl Into<String>) -> Step<In, Out, C> {
        let run = self.run;
        Step::from_body(
            name.into().into(),
            StepKind::Pipeline,
            Arc::new(move |input, frame| run(input, frame)),
        )
    }

    /// The number of top-level steps.
    pub fn len(&self) -> usize {
        usize::try_from(self.n_steps).unwrap_or(usize::MAX)
    }

    /// Always `false`: a pipeline has at least one step.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Runs the steps as children of `frame`.
    pub(crate) fn run_in(
        &self,
        input: In,
        frame: Frame<C>,
    ) -> futures::future::BoxFuture<'static, Result<Out, Failure>> {
        (self.run)(input, frame)
    }
}
