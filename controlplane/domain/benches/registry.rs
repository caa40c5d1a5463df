//! The model registry's history at scale: a log of about a million registry events (stage
//! transitions and alias moves over 100 models, a quarter of them on one hot model), then
//! "who held stage S / alias A at instant T" asked at random past instants, as
//! `cairn model who --at` and ListModels `at_ms` ask it of the folded state. Prints the
//! fold rate and p50/p99/max of `decide`+`evolve` per command and of the question.
//!
//! `cargo bench -p cairn-domain --bench registry [-- EVENTS]`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_domain::model::{Held, ModelCommand, Stage};
use cairn_domain::{decide, Command, CommandBody, Position, State};

/// A small deterministic generator (xorshift64*), so every run builds the same log.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const MODELS: u64 = 100;
const VERSIONS: u64 = 20;
const ALIASES: [&str; 3] = ["champion", "challenger", "shadow"];
const STAGES: [Stage; 3] = [Stage::Staging, Stage::Production, Stage::Archived];

fn apply(s: &mut State, ts: i64, body: CommandBody) -> usize {
    let c = Command {
        timestamp_ms: ts,
        actor: format!("user/u{}", ts % 7),
        role: None,
        bearer: Vec::new(),
        correlation_id: String::new(),
        expected_revision: None,
        body,
    };
    let pos = Position {
        raft_index: s.last_sequence() + 1,
        raft_term: 1,
    };
    match decide(s, &c, pos) {
        Ok(events) => {
            for e in &events {
                s.evolve(e);
            }
            events.len()
        }
        Err(r) => panic!("command refused: {r}"),
    }
}

fn name(i: u64) -> String {
    if i == 0 {
        "hot".into()
    } else {
        format!("model-{i:03}")
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "{what:<44} n={:<8} p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

fn main() {
    let target: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut s = State::new();
    let mut ts: i64 = 1_000_000;
    let mut events = 0;
    for m in 0..MODELS {
        let model = ModelCommand::Create {
            name: name(m),
            description: String::new(),
            tags: BTreeMap::new(),
        };
        events += apply(&mut s, ts, CommandBody::Model(model));
        for v in 0..VERSIONS {
            ts += 1;
            let version = ModelCommand::CreateVersion {
                name: name(m),
                source: format!("s3://models/{}/{v}", name(m)),
                run_id: String::new(),
                description: String::new(),
                tags: BTreeMap::new(),
                create_model: false,
            };
            events += apply(&mut s, ts, CommandBody::Model(version));
        }
    }
    let first_ms = ts;
    let started = Instant::now();
    let mut commands = Vec::new();
    while events < target {
        ts += 1;
        // A quarter of all moves are on the hot model.
        let m = if rng.below(4) == 0 {
            0
        } else {
            1 + rng.below(MODELS - 1)
        };
        let version = 1 + rng.below(VERSIONS);
        let body = if rng.below(2) == 0 {
            let stage = STAGES[rng.below(3) as usize];
            ModelCommand::Transition {
                name: name(m),
                version,
                stage,
                expected: None,
                expected_in_target: None,
                archive_existing: stage != Stage::Archived && rng.below(4) == 0,
                reason: String::new(),
            }
        } else {
            ModelCommand::SetAlias {
                name: name(m),
                alias: ALIASES[rng.below(3) as usize].into(),
                version,
                expected: None,
                reason: String::new(),
            }
        };
        let t = Instant::now();
        events += apply(&mut s, ts, CommandBody::Model(body));
        commands.push(t.elapsed());
    }
    let took = started.elapsed();
    let last_ms = ts;
    let moves: usize = s.models().values().map(|m| m.timeline.moves().len()).sum();
    let hot = s.models()["hot"].timeline.moves().len();
    println!(
        "log: {events} events ({moves} moves on timelines, {hot} on the hot model) folded in {took:.2?} ({:.0} events/s)",
        events as f64 / took.as_secs_f64()
    );
    report("decide+evolve, one registry command", commands);

    // Questions at uniformly random past instants, of every model, stage and alias.
    let mut any = Vec::new();
    let mut on_hot = Vec::new();
    let mut answered = 0usize;
    for i in 0..200_000u64 {
        let m = if i % 2 == 0 { 0 } else { rng.below(MODELS) };
        let what = if rng.below(2) == 0 {
            Held::Stage(STAGES[rng.below(3) as usize])
        } else {
            Held::Alias(ALIASES[rng.below(3) as usize].into())
        };
        let at = first_ms + rng.below((last_ms - first_ms) as u64) as i64;
        let model = &s.models()[name(m).as_str()];
        let t = Instant::now();
        let held = model.held(&what, at);
        let took = t.elapsed();
        answered += held.len();
        if m == 0 {
            on_hot.push(took);
        } else {
            any.push(took);
        }
    }
    report("who held it at T, the hot model", on_hot);
    report("who held it at T, another model", any);
    println!("({answered} holdings in all answers)");
}
