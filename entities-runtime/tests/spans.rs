//! One `tracing` span per action, carrying entity type, id, action, version and outcome.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use entities_runtime::testing::TestDatabase;
use support::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::{Layer, registry::LookupSpan};

type Fields = BTreeMap<String, String>;

/// Collects the fields of every closed `action` span.
#[derive(Clone, Default)]
struct ActionSpans(Arc<Mutex<Vec<Fields>>>);

struct Recorder<'a>(&'a mut Fields);

impl Visit for Recorder<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for ActionSpans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        if attrs.metadata().name() == "action" {
            let mut fields = Fields::new();
            attrs.record(&mut Recorder(&mut fields));
            ctx.span(id)
                .expect("span exists")
                .extensions_mut()
                .insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(&mut Recorder(fields));
        }
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && let Some(fields) = span.extensions_mut().remove::<Fields>()
        {
            self.0.lock().expect("not poisoned").push(fields);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_has_a_span_with_its_entity_version_and_outcome() {
    let spans = ActionSpans::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone()))
        .expect("the only subscriber of this test binary");

    let db = TestDatabase::sqlite();
    let runtime = runtime(&db).await;
    let id = new_counter(&runtime, "traced").await.id;
    let counter = runtime.entity::<Counter>(id);
    counter
        .send_action(&ctx(), Add { amount: 2 })
        .await
        .unwrap();
    counter
        .send_action(&ctx(), Add { amount: 0 })
        .await
        .unwrap_err();
    runtime.shutdown().await;

    let spans = spans.0.lock().unwrap().clone();
    let summary: Vec<_> = spans
        .iter()
        .map(|f| {
            (
                f["entity_type"].as_str(),
                f["entity_id"].clone(),
                f["action"].as_str(),
                f["version"].as_str(),
                f["outcome"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("counter", id.to_string(), "Open", "1", "ok"),
            ("counter", id.to_string(), "Add", "2", "ok"),
            ("counter", id.to_string(), "Add", "2", "rejected"),
        ]
    );
}
