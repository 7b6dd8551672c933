//! Quickstart: a support-ticket triage pipeline (classify, retrieve, draft, review), recorded.
//!
//! `cargo run --example quickstart` runs it over four tickets and prints each run's result. One
//! ticket needs a retry of the classifier, one fails (its customer is not in the CRM). Every run
//! lands in `flujo_ops.db` in the current directory: look at them with `flujo lens list` and
//! `flujo lens show latest`.
//!
//! The "LLM" and "tools" here are plain functions with a short sleep standing in for the network
//! call, so the example runs offline and gives the same results every time.

use std::time::Duration;

use flujo::{
    branch_on, join, loop_until, step, Flujo, Pipeline, StepContext, StepError, StepResult, Usage,
};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
struct Ticket {
    id: &'static str,
    customer: &'static str,
    subject: &'static str,
    body: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct Classified {
    ticket_id: &'static str,
    customer: &'static str,
    category: String,
    urgency: String,
}

#[derive(Debug, Clone, Serialize)]
struct Research {
    category: String,
    articles: Vec<String>,
    history: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Draft {
    category: String,
    reply: String,
    revision: u32,
    approved: bool,
}

/// The run's shared context: what every step may read and update.
#[derive(Debug, Default, Serialize)]
struct Triage {
    ticket_id: String,
    category: String,
    classifier_attempts: u32,
    reviewer_notes: Vec<String>,
}

/// A stand-in for a model call: waits like one, and reports its usage.
async fn fake_llm(cx: &StepContext<Triage>, prompt: &str, completion_tokens: u64) {
    tokio::time::sleep(Duration::from_millis(25)).await;
    let tokens = prompt.len() as u64 / 4 + completion_tokens;
    cx.add_usage(Usage {
        tokens,
        // priced like a small hosted model: $0.60 per million tokens
        cost_usd: tokens as f64 * 0.6e-6,
    });
}

fn classify_ticket(ticket: &Ticket) -> (&'static str, &'static str) {
    let text = format!("{} {}", ticket.subject, ticket.body).to_lowercase();
    let category = if ["invoice", "charged", "refund"]
        .iter()
        .any(|w| text.contains(w))
    {
        "billing"
    } else if ["crash", "error", "login"].iter().any(|w| text.contains(w)) {
        "technical"
    } else {
        "general"
    };
    let urgency = if text.contains("twice") || text.contains("crash") {
        "high"
    } else {
        "normal"
    };
    (category, urgency)
}

fn triage_pipeline() -> Pipeline<Ticket, Draft, Triage> {
    let classify = step(
        "classify",
        |ticket: Ticket, cx: StepContext<Triage>| async move {
            let attempt = cx.update(|t| {
                t.ticket_id = ticket.id.to_owned();
                t.classifier_attempts += 1;
                t.classifier_attempts
            })?;
            fake_llm(&cx, ticket.body, 12).await;
            // the model endpoint is overloaded on the first try for this ticket: the step waits
            // (exponential backoff with jitter), then retries
            if ticket.id == "T-1002" && attempt == 1 {
                return Err(StepError::new("model endpoint answered 503 (overloaded)").transient());
            }
            let (category, urgency) = classify_ticket(&ticket);
            cx.update(|t| t.category = category.to_owned())?;
            Ok(Classified {
                ticket_id: ticket.id,
                customer: ticket.customer,
                category: category.to_owned(),
                urgency: urgency.to_owned(),
            })
        },
    )
    .max_retries(2)
    .retry_if(|error: &StepError| error.is_transient() || error.is_timeout())
    .timeout(Duration::from_secs(5));

    let search_kb = step(
        "search_kb",
        |c: Classified, _cx: StepContext<Triage>| async move {
            tokio::time::sleep(Duration::from_millis(15)).await;
            let articles = match c.category.as_str() {
                "billing" => vec![
                    "KB-12 Duplicate charges and refunds",
                    "KB-31 Reading your invoice",
                ],
                "technical" => vec![
                    "KB-77 App crashes after updating",
                    "KB-80 Resetting your session",
                ],
                _ => vec!["KB-01 Plans and discounts"],
            };
            Ok(articles.into_iter().map(str::to_owned).collect::<Vec<_>>())
        },
    );
    let customer_history = step(
        "customer_history",
        |c: Classified, _cx: StepContext<Triage>| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            match c.customer {
                "ana@example.com" => Ok(vec!["2026-09-02 asked about invoice layout".to_owned()]),
                "li@example.com" => Ok(vec![
                    "2026-10-14 reported slow sync".to_owned(),
                    "2026-11-20 upgraded to Pro".to_owned(),
                ]),
                "sam@example.com" => Ok(Vec::new()),
                other => Err(StepError::new(format!(
                    "no customer record for {other} in the CRM"
                ))),
            }
        },
    );
    // both branches run concurrently; their outputs come back as a tuple, one per branch
    let retrieve = join("retrieve", (search_kb, customer_history));
    let research = step(
        "collect",
        |(articles, history): (Vec<String>, Vec<String>), cx: StepContext<Triage>| async move {
            let category = cx.read(|t| t.category.clone())?;
            Ok(Research {
                category,
                articles,
                history,
            })
        },
    );

    let drafter = |name: &'static str, opening: &'static str| {
        step(
            name,
            move |r: Research, cx: StepContext<Triage>| async move {
                let prompt = format!("{opening} {:?} {:?}", r.articles, r.history);
                fake_llm(&cx, &prompt, 180).await;
                Ok(Draft {
                    category: r.category.clone(),
                    reply: format!("{opening} See {}.", r.articles.join("; ")),
                    revision: 1,
                    approved: false,
                })
            },
        )
    };
    let draft = branch_on("draft", |r: &Research, _: &Triage| r.category.clone())
        .branch(
            "billing".to_owned(),
            drafter(
                "draft_billing",
                "Sorry about the double charge: a refund is on its way.",
            ),
        )
        .branch(
            "technical".to_owned(),
            drafter(
                "draft_technical",
                "Thanks for the report: here is how to get the app working again.",
            ),
        )
        .otherwise(drafter("draft_general", "Thanks for asking!"));

    let revise = step("revise", |d: Draft, cx: StepContext<Triage>| async move {
        fake_llm(&cx, &d.reply, 40).await;
        // the reviewer asks for a warmer closing once, then approves
        let approved = d.revision >= 2;
        let note = if approved {
            "approved"
        } else {
            "add a closing line"
        };
        cx.update(|t| t.reviewer_notes.push(format!("rev {}: {note}", d.revision)))?;
        let reply = if approved {
            d.reply.clone()
        } else {
            format!("{} We're here if you need anything else.", d.reply)
        };
        Ok(Draft {
            reply,
            revision: d.revision + u32::from(!approved),
            approved,
            ..d
        })
    });
    let review = loop_until("review", revise, |d: &Draft, _: &Triage| d.approved).max_iterations(3);

    Pipeline::new(classify)
        .then(retrieve)
        .then(research)
        .then(draft)
        .then(review)
}

// pub(crate): tests/otlp_export.rs runs this very example in a child process
#[tokio::main]
pub(crate) async fn main() {
    let tickets = [
        Ticket {
            id: "T-1001",
            customer: "ana@example.com",
            subject: "Charged twice",
            body: "I was charged twice for my March invoice.",
        },
        Ticket {
            id: "T-1002",
            customer: "li@example.com",
            subject: "App crash",
            body: "The app crashes on login since the last update.",
        },
        Ticket {
            id: "T-1003",
            customer: "sam@example.com",
            subject: "Discounts",
            body: "Do you have a student discount?",
        },
        Ticket {
            id: "T-1004",
            customer: "kim@unknown.test",
            subject: "Login error",
            body: "I get an error when I log in.",
        },
    ];
    let flujo = Flujo::new("support-triage", triage_pipeline()).with_pipeline_version("1.0");
    for ticket in tickets {
        let id = ticket.id;
        let result = flujo.run(ticket).await;
        // every step execution, nested ones (parallel branches, loop rounds) included
        let (mut n_steps, mut retried) = (0, 0);
        let mut stack: Vec<&StepResult> = result.step_history.iter().collect();
        while let Some(step) = stack.pop() {
            n_steps += 1;
            retried += u32::from(step.attempts > 1);
            stack.extend(&step.children);
        }
        println!(
            "{id}  run {}  {:<9}  {n_steps:>2} steps ({retried} retried)  {:>3} tokens  ${:.6}",
            result.run_id,
            result.status.as_str(),
            result.total_tokens,
            result.total_cost_usd,
        );
        match (&result.output, &result.error) {
            (Some(draft), _) => println!("        reply: {}", draft.reply),
            (None, Some(error)) => println!("        error: {error}"),
            (None, None) => {}
        }
    }
    match flujo::recording_store() {
        Some(store) => {
            println!("\nrecorded in {store}: try `flujo lens list` and `flujo lens show latest`")
        }
        None => println!("\nnot recorded (FLUJO_STATE_URI or state_uri is off)"),
    }
}
