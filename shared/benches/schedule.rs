//! Schedule engine figures: `cargo bench -p shiki-shared --bench schedule`.
//!
//! Prints the time to list every transition of the example's year, to answer
//! `settings_at` for 100k minute steps, and the memory of the compiled schedule.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shiki_shared::schedule::{Cursor, Schedule, ScheduleDocument, canonical_json};

const EXAMPLE: &str = include_str!("../../deploy/schedule.example.json");

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            black_box(f());
            t0.elapsed()
        })
        .collect();
    samples.sort();
    (samples[0], samples[samples.len() / 2])
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// `n` instants `step` minutes apart, from `start`.
fn every(start: DateTime<Utc>, step: i64, n: i64) -> Vec<DateTime<Utc>> {
    (0..n)
        .map(|i| start + chrono::Duration::minutes(i * step))
        .collect()
}

/// Asks `settings_at` at every instant; the number of settings seen.
fn settings_at_each(schedule: &Schedule, instants: &[DateTime<Utc>]) -> usize {
    instants
        .iter()
        .map(|t| schedule.settings_at(*t).settings.len())
        .sum()
}

/// Moves a cursor through every instant and reads at each with `read`; the sum read.
fn cursor_through(
    schedule: &Schedule,
    instants: &[DateTime<Utc>],
    read: impl Fn(&Cursor) -> usize,
) -> usize {
    let Some(&first) = instants.first() else {
        return 0;
    };
    let mut cursor = schedule.cursor(first);
    instants
        .iter()
        .map(|t| {
            cursor.advance_to(schedule, *t);
            read(&cursor)
        })
        .sum()
}

fn report(name: &str, schedule: &Schedule) {
    let (start, end) = (schedule.start(), schedule.end());
    let n = schedule.transitions(start, end).len();
    println!(
        "## {name} ({}, {} .. {})",
        schedule.timezone(),
        schedule.valid_from(),
        schedule.valid_to()
    );
    let (min, med) = time(50, || schedule.transitions(start, end));
    println!(
        "transitions(full year): {n} transitions, min {}, median {}",
        ms(min),
        ms(med)
    );
    let (min, med) = time(50, || schedule.count_transitions(start, end));
    println!(
        "count_transitions(full year): min {}, median {}",
        ms(min),
        ms(med)
    );

    let steps = 100_000i64;
    let instants = every(start, 5, steps);
    let (min, med) = time(3, || settings_at_each(schedule, &instants));
    println!(
        "settings_at x {steps} (5-minute steps over the year, with per-key next transition): min {}, median {} ({:.2} µs/call)",
        ms(min),
        ms(med),
        min.as_secs_f64() * 1e6 / steps as f64
    );
    let minutes = every(start, 1, steps);
    let (min, _) = time(3, || settings_at_each(schedule, &minutes));
    println!(
        "settings_at x {steps} (consecutive minutes, ~69 days): {}",
        ms(min)
    );
    let (min, med) = time(10, || {
        cursor_through(schedule, &minutes, |c| {
            c.value(schedule, "run").is_some() as usize
        })
    });
    println!(
        "Cursor::advance_to + value x {steps} (consecutive minutes): min {}, median {}",
        ms(min),
        ms(med)
    );
    let year_minutes = every(start, 1, (end - start).num_minutes());
    let (min, med) = time(10, || {
        cursor_through(schedule, &year_minutes, |c| c.values(schedule).count())
    });
    println!(
        "Cursor over every minute of the year ({} steps, all values read): min {}, median {}",
        year_minutes.len(),
        ms(min),
        ms(med)
    );
    let (min, _) = time(3, || {
        minutes
            .iter()
            .filter_map(|t| schedule.next_transition_touching("run", *t))
            .count()
    });
    println!("next_transition_touching(run) x {steps}: {}", ms(min));
}

/// Resident set size of this process in bytes (Linux), to measure real memory use.
fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

const COPIES: usize = 2_000;

fn main() {
    let doc = match ScheduleDocument::from_json_str(EXAMPLE) {
        Ok(doc) => doc,
        Err(e) => {
            println!("example does not parse: {e}");
            return;
        }
    };
    let schedule = match Schedule::new(&doc, None) {
        Ok(s) => s,
        Err(e) => {
            println!("example is invalid: {e}");
            return;
        }
    };
    // Memory first, on a fresh heap: RSS growth over many live copies (allocator overhead
    // included). Both sets of copies stay alive so neither reuses the other's pages.
    let r0 = rss_bytes();
    let schedules: Vec<Schedule> = (0..COPIES).map(|_| schedule.clone()).collect();
    let r1 = rss_bytes();
    let docs: Vec<ScheduleDocument> = (0..COPIES).map(|_| doc.clone()).collect();
    let r2 = rss_bytes();
    if let (Some(r0), Some(r1), Some(r2)) = (r0, r1, r2) {
        println!(
            "memory, measured (RSS growth / {COPIES} copies): compiled schedule {} bytes, parsed document {} bytes",
            r1.saturating_sub(r0) / COPIES,
            r2.saturating_sub(r1) / COPIES
        );
    }
    black_box((schedules, docs));
    println!(
        "memory, size-of walk of the compiled schedule: ~{} bytes",
        schedule.approx_size_bytes()
    );
    println!(
        "example document: {} bytes pretty, {} bytes canonical",
        EXAMPLE.len(),
        canonical_json(&doc.to_value()).len()
    );

    let (min, _) = time(20, || {
        ScheduleDocument::from_json_str(EXAMPLE).map(|d| d.hash())
    });
    println!("parse + hash example: {}", ms(min));
    let (min, _) = time(20, || {
        Schedule::new(&doc, None).map(|s| s.approx_size_bytes())
    });
    println!("validate + compile example: {}", ms(min));

    report("sapporo-2027", &schedule);
    // the same year in a DST zone
    let mut ny = doc.clone();
    ny.timezone = "America/New_York".into();
    match Schedule::new(&ny, None) {
        Ok(s) => report("same schedule in America/New_York", &s),
        Err(e) => println!("New York variant is invalid: {e}"),
    }
}
