//! CPU time per thread of this process, from `/proc/self/task/*/schedstat`: the ingest
//! benchmark reports where each message's CPU goes.

use std::collections::BTreeMap;

/// Nanoseconds on CPU, summed by thread name.
pub(super) type ThreadCpu = BTreeMap<String, u64>;

/// CPU time each thread of this process has used so far, summed by thread name
/// (`/proc/self/task/*/schedstat`, nanoseconds on CPU). Empty where `/proc` is missing.
pub(super) fn cpu_by_thread() -> ThreadCpu {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
            });
        if let Some(ns) = ns {
            *out.entry(name.trim().to_owned()).or_insert(0) += ns;
        }
    }
    out
}

/// Adds the CPU each thread used between two [`cpu_by_thread`] readings to `acc`.
pub(super) fn add_cpu(acc: &mut ThreadCpu, before: &ThreadCpu, after: &ThreadCpu) {
    for (k, v) in after {
        *acc.entry(k.clone()).or_insert(0) += v.saturating_sub(before.get(k).copied().unwrap_or(0));
    }
}

/// CPU used per message, in total and by thread, busiest first (`name 3.1`, µs/msg).
pub(super) fn cpu_per_message(used: &ThreadCpu, messages: usize) -> String {
    let mut used: Vec<(&String, u64)> = used
        .iter()
        .map(|(k, v)| (k, *v))
        .filter(|(_, v)| *v > 0)
        .collect();
    used.sort_by_key(|u| std::cmp::Reverse(u.1));
    let total: u64 = used.iter().map(|(_, v)| v).sum();
    let per = |ns: u64| ns as f64 / 1e3 / messages.max(1) as f64;
    let mut s = format!("{:.1} µs/msg:", per(total));
    for (name, ns) in used.iter().filter(|(_, v)| per(*v) >= 0.05) {
        s.push_str(&format!(" {name} {:.1}", per(*ns)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(threads: &[(&str, u64)]) -> ThreadCpu {
        threads.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn add_cpu_sums_what_each_thread_used_between_readings() {
        let mut acc = cpu(&[("store-writer", 5)]);
        let before = cpu(&[("store-writer", 100), ("router-0", 10)]);
        let after = cpu(&[("store-writer", 130), ("router-0", 10), ("new", 7)]);
        add_cpu(&mut acc, &before, &after);
        assert_eq!(
            acc,
            cpu(&[("store-writer", 35), ("router-0", 0), ("new", 7)])
        );
    }

    #[test]
    fn cpu_per_message_lists_the_busiest_thread_first_and_leaves_out_idle_ones() {
        // 1000 messages: 3 ms is 3.0 µs/msg, 1 ms is 1.0, 10 µs is 0.01 (left out).
        let used = cpu(&[
            ("router-0", 1_000_000),
            ("idle", 10_000),
            ("shiki-cloud", 3_000_000),
        ]);
        assert_eq!(
            cpu_per_message(&used, 1000),
            "4.0 µs/msg: shiki-cloud 3.0 router-0 1.0"
        );
    }
}
