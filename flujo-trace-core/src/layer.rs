//! The recording half of every store's layer: span callbacks that decode the span contract
//! (ARCHITECTURE.md) into the core's rows and send them to the store's writer thread, behind a
//! per-layer filter that enables exactly the contract's spans. A store's layer type
//! (`SqliteLayer`, `PostgresLayer`) holds a [`RecordingLayer`] and forwards to it with
//! [`store_layer!`](crate::store_layer), so the callbacks exist once.
//!
//! Span callbacks never touch storage: they only decode and hand rows to the bounded channel.

use std::any::{Any, TypeId};
use std::sync::Arc;

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::channel::WriterLink;
use crate::decode::{
    decode_run_record, decode_run_start, decode_step_record, decode_step_start, finish_run,
    finish_step, RUN_SPAN, STEP_SPAN, TARGET,
};
use crate::rows::{RunEnd, StepClose};
use crate::writer::Row;

/// A [`Layer`] that records flujo's run and step spans through a writer thread, whatever the
/// store. Stores wrap it in their own type; the facade finds it in any subscriber with
/// `Dispatch::downcast_ref::<RecordingLayer>()` and awaits [`link`](Self::link)'s barrier.
///
/// It carries its own per-layer filter (the contract's spans, nothing else), so beside it every
/// other callsite costs what it cost without it. It needs a
/// [`Registry`](tracing_subscriber::Registry) at the root of the stack, like every per-layer
/// filtered layer.
pub struct RecordingLayer {
    recorder: SpanRecorder,
    /// `Filtered<SpanRecorder, FlujoSpans, S>`, built in `on_layer` once the subscriber type `S`
    /// is known; until then (or outside a registry stack) the recorder is called directly.
    filtered: Option<Box<dyn Any + Send + Sync>>,
}

impl RecordingLayer {
    /// Records into the writer behind `link`; payloads longer than `payload_cap` bytes are cut.
    pub fn new(link: Arc<WriterLink>, payload_cap: usize) -> RecordingLayer {
        RecordingLayer {
            recorder: SpanRecorder { link, payload_cap },
            filtered: None,
        }
    }

    /// The link to the writer thread: its barrier and its loss count.
    pub fn link(&self) -> &Arc<WriterLink> {
        &self.recorder.link
    }

    fn filtered<S>(&self) -> Option<&Filtered<SpanRecorder, FlujoSpans, S>>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + 'static,
    {
        self.filtered.as_ref()?.downcast_ref()
    }
}

impl std::fmt::Debug for RecordingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingLayer")
            .field("link", &self.recorder.link)
            .field("payload_cap", &self.recorder.payload_cap)
            .finish_non_exhaustive()
    }
}

/// Turns span callbacks into rows for the writer.
#[derive(Clone)]
struct SpanRecorder {
    link: Arc<WriterLink>,
    /// Payloads longer than this are stored cut.
    payload_cap: usize,
}

/// A run span's state in the registry's extensions: its id and close fields so far.
struct RunSpan {
    run_id: String,
    end: RunEnd,
    /// The last top-level step that closed, and its recorded output: when the run's output is
    /// the same, [`RunEnd::output_step_run_id`] names the step.
    last_step: Option<(String, Option<String>)>,
    /// Recording layers in this subscriber that track the span (normally one).
    layers: usize,
}

/// A step span's state in the registry's extensions.
struct StepSpan {
    close: StepClose,
    /// A step of the run itself, not of a control-flow step.
    top_level: bool,
    layers: usize,
}

/// Enables exactly the spans of the flujo contract, and only for this layer.
struct FlujoSpans;

impl FlujoSpans {
    fn wants(metadata: &Metadata<'_>) -> bool {
        metadata.is_span()
            && metadata.target() == TARGET
            && matches!(metadata.name(), RUN_SPAN | STEP_SPAN)
    }
}

impl<S> Filter<S> for FlujoSpans {
    fn enabled(&self, metadata: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        Self::wants(metadata)
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if Self::wants(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // the contract's spans are INFO
        Some(LevelFilter::INFO)
    }
}

/// Forwards every callback to the filtered recorder (the way `Filtered` itself forwards), so
/// the registry sees a per-layer filtered layer and `Dispatch::downcast_ref::<RecordingLayer>`
/// (and a store's own type, through [`store_layer!`](crate::store_layer)) still finds it.
impl<S> Layer<S> for RecordingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        if let Some(filtered) = self.filtered::<S>() {
            filtered.on_register_dispatch(subscriber);
        }
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        let mut filtered = self.recorder.clone().with_filter(FlujoSpans);
        filtered.on_layer(subscriber);
        self.filtered = Some(Box::new(filtered));
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        match self.filtered::<S>() {
            Some(filtered) => filtered.register_callsite(metadata),
            None => Interest::always(),
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        match self.filtered::<S>() {
            Some(filtered) => filtered.enabled(metadata, ctx),
            None => true,
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.filtered::<S>()?.max_level_hint()
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        match self.filtered::<S>() {
            Some(filtered) => filtered.event_enabled(event, ctx),
            None => true,
        }
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        match self.filtered::<S>() {
            Some(filtered) => filtered.on_new_span(attrs, id, ctx),
            None => self.recorder.on_new_span(attrs, id, ctx),
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        match self.filtered::<S>() {
            Some(filtered) => filtered.on_record(id, values, ctx),
            None => self.recorder.on_record(id, values, ctx),
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        if let Some(filtered) = self.filtered::<S>() {
            filtered.on_follows_from(id, follows, ctx);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if let Some(filtered) = self.filtered::<S>() {
            filtered.on_event(event, ctx);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(filtered) = self.filtered::<S>() {
            filtered.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(filtered) = self.filtered::<S>() {
            filtered.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        match self.filtered::<S>() {
            Some(filtered) => filtered.on_close(id, ctx),
            None => self.recorder.on_close(id, ctx),
        }
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        if let Some(filtered) = self.filtered::<S>() {
            filtered.on_id_change(old, new, ctx);
        }
    }

    #[doc(hidden)]
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: forwarded to the wrapped layer, which answers for its own types (the filter
        // marker the registry looks for included); the pointers stay valid as long as `self`
        unsafe { self.filtered::<S>()?.downcast_raw(id) }
    }
}

impl<S> Layer<S> for SpanRecorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let metadata = attrs.metadata();
        if metadata.target() != TARGET {
            return;
        }
        let row = match metadata.name() {
            RUN_SPAN => {
                let Some((run, end)) = decode_run_start(attrs, self.payload_cap) else {
                    return;
                };
                let Some(span) = ctx.span(id) else { return };
                let mut extensions = span.extensions_mut();
                match extensions.get_mut::<RunSpan>() {
                    Some(state) => state.layers += 1,
                    None => extensions.insert(RunSpan {
                        run_id: run.run_id.clone(),
                        end,
                        last_step: None,
                        layers: 1,
                    }),
                }
                Row::RunStart(run)
            }
            STEP_SPAN => {
                let Some((step, close)) = decode_step_start(attrs, self.payload_cap) else {
                    return;
                };
                let Some(span) = ctx.span(id) else { return };
                let mut extensions = span.extensions_mut();
                match extensions.get_mut::<StepSpan>() {
                    Some(state) => state.layers += 1,
                    None => extensions.insert(StepSpan {
                        close,
                        top_level: step.parent_step_run_id.is_none(),
                        layers: 1,
                    }),
                }
                Row::StepStart(step)
            }
            _ => return,
        };
        // the extensions guard and span are dropped: sending may wait for the writer
        self.link.send(row);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if span.metadata().target() != TARGET {
            return;
        }
        // the span's name says which state it holds: one extensions lookup per record
        let name = span.metadata().name();
        let mut extensions = span.extensions_mut();
        if name == STEP_SPAN {
            if let Some(state) = extensions.get_mut::<StepSpan>() {
                decode_step_record(values, &mut state.close, self.payload_cap);
            }
        } else if name == RUN_SPAN {
            if let Some(state) = extensions.get_mut::<RunSpan>() {
                decode_run_record(values, &mut state.end, self.payload_cap);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if span.metadata().target() != TARGET {
            return;
        }
        let row = {
            let mut extensions = span.extensions_mut();
            if let Some(state) = extensions.get_mut::<RunSpan>() {
                let (run_id, mut end, last_step) = if state.layers > 1 {
                    state.layers -= 1;
                    (
                        state.run_id.clone(),
                        state.end.clone(),
                        state.last_step.clone(),
                    )
                } else {
                    let Some(state) = extensions.remove::<RunSpan>() else {
                        return;
                    };
                    (state.run_id, state.end, state.last_step)
                };
                if let Some((step_run_id, output)) = last_step {
                    if end.output_blob.is_some() && output == end.output_blob {
                        end.output_step_run_id = Some(step_run_id);
                    }
                }
                Row::RunEnd {
                    run_id,
                    end: finish_run(end),
                }
            } else if let Some(state) = extensions.get_mut::<StepSpan>() {
                let top_level = state.top_level;
                let close = if state.layers > 1 {
                    state.layers -= 1;
                    state.close.clone()
                } else {
                    let Some(state) = extensions.remove::<StepSpan>() else {
                        return;
                    };
                    state.close
                };
                drop(extensions);
                let close = finish_step(close);
                if top_level {
                    remember_last_step(&span, &close);
                }
                Row::StepEnd(close)
            } else {
                return;
            }
        };
        drop(span);
        self.link.send(row);
    }
}

/// Tells the run span of a top-level step that closed its id and output (the run's output is
/// normally its last top-level step's).
fn remember_last_step<S>(step: &tracing_subscriber::registry::SpanRef<'_, S>, close: &StepClose)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(run) = step.parent() else { return };
    if run.metadata().name() != RUN_SPAN {
        return;
    }
    let mut extensions = run.extensions_mut();
    if let Some(state) = extensions.get_mut::<RunSpan>() {
        state.last_step = Some((close.step_run_id.clone(), close.output_blob.clone()));
    }
}

/// Implements [`Layer`] for a store's layer type by forwarding every callback to its
/// [`RecordingLayer`] field, answering `downcast_raw` for the store's type first, so that
/// `Dispatch::downcast_ref` finds both the store's type and the [`RecordingLayer`] inside.
///
/// ```ignore
/// pub struct SqliteLayer { recording: RecordingLayer, /* ... */ }
/// flujo_trace_core::store_layer!(SqliteLayer, recording);
/// ```
#[macro_export]
macro_rules! store_layer {
    ($store:ty, $field:ident) => {
        impl<S> $crate::__private::Layer<S> for $store
        where
            S: $crate::__private::Subscriber + for<'a> $crate::__private::LookupSpan<'a> + 'static,
        {
            fn on_register_dispatch(&self, subscriber: &$crate::__private::Dispatch) {
                $crate::__private::Layer::<S>::on_register_dispatch(&self.$field, subscriber)
            }
            fn on_layer(&mut self, subscriber: &mut S) {
                $crate::__private::Layer::<S>::on_layer(&mut self.$field, subscriber)
            }
            fn register_callsite(
                &self,
                metadata: &'static $crate::__private::Metadata<'static>,
            ) -> $crate::__private::Interest {
                $crate::__private::Layer::<S>::register_callsite(&self.$field, metadata)
            }
            fn enabled(
                &self,
                metadata: &$crate::__private::Metadata<'_>,
                ctx: $crate::__private::Context<'_, S>,
            ) -> bool {
                $crate::__private::Layer::<S>::enabled(&self.$field, metadata, ctx)
            }
            fn max_level_hint(&self) -> Option<$crate::__private::LevelFilter> {
                $crate::__private::Layer::<S>::max_level_hint(&self.$field)
            }
            fn event_enabled(
                &self,
                event: &$crate::__private::Event<'_>,
                ctx: $crate::__private::Context<'_, S>,
            ) -> bool {
                $crate::__private::Layer::<S>::event_enabled(&self.$field, event, ctx)
            }
            fn on_new_span(
                &self,
                attrs: &$crate::__private::Attributes<'_>,
                id: &$crate::__private::Id,
                ctx: $crate::__private::Context<'_, S>,
            ) {
                $crate::__private::Layer::<S>::on_new_span(&self.$field, attrs, id, ctx)
            }
            fn on_record(
                &self,
                id: &$crate::__private::Id,
                values: &$crate::__private::Record<'_>,
                ctx: $crate::__private::Context<'_, S>,
            ) {
                $crate::__private::Layer::<S>::on_record(&self.$field, id, values, ctx)
            }
            fn on_follows_from(
                &self,
                id: &$crate::__private::Id,
                follows: &$crate::__private::Id,
                ctx: $crate::__private::Context<'_, S>,
            ) {
                $crate::__private::Layer::<S>::on_follows_from(&self.$field, id, follows, ctx)
            }
            fn on_event(
                &self,
                event: &$crate::__private::Event<'_>,
                ctx: $crate::__private::Context<'_, S>,
            ) {
                $crate::__private::Layer::<S>::on_event(&self.$field, event, ctx)
            }
            fn on_enter(&self, id: &$crate::__private::Id, ctx: $crate::__private::Context<'_, S>) {
                $crate::__private::Layer::<S>::on_enter(&self.$field, id, ctx)
            }
            fn on_exit(&self, id: &$crate::__private::Id, ctx: $crate::__private::Context<'_, S>) {
                $crate::__private::Layer::<S>::on_exit(&self.$field, id, ctx)
            }
            fn on_close(&self, id: $crate::__private::Id, ctx: $crate::__private::Context<'_, S>) {
                $crate::__private::Layer::<S>::on_close(&self.$field, id, ctx)
            }
            fn on_id_change(
                &self,
                old: &$crate::__private::Id,
                new: &$crate::__private::Id,
                ctx: $crate::__private::Context<'_, S>,
            ) {
                $crate::__private::Layer::<S>::on_id_change(&self.$field, old, new, ctx)
            }
            #[doc(hidden)]
            unsafe fn downcast_raw(&self, id: ::std::any::TypeId) -> Option<*const ()> {
                if id == ::std::any::TypeId::of::<Self>() {
                    return Some(self as *const Self as *const ());
                }
                // SAFETY: forwarded to the recording layer, which answers for its own types;
                // the pointers stay valid as long as `self`
                unsafe { $crate::__private::Layer::<S>::downcast_raw(&self.$field, id) }
            }
        }
    };
}
