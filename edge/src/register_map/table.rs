//! The point list as documentation.

use super::{OutOfRange, RegisterKind, RegisterMap, WordOrder};

/// The point list as a Markdown table (docs/points.md is checked against it).
pub fn points_table(map: &RegisterMap) -> String {
    let mut out = String::from(
        "| name | role | table | register (address) | type | scale | unit | limits | meaning |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let number = |kind: RegisterKind, a: u16| {
        let d = kind.describe(a);
        d.rsplit(' ').next().unwrap_or_default().to_owned()
    };
    for p in map.points() {
        let mut ty = format!("{:?}", p.data_type).to_lowercase();
        if p.width() == 2 {
            let first = match p.word_order {
                WordOrder::Big => "high",
                WordOrder::Little => "low",
            };
            ty.push_str(&format!(", {first} word first"));
        }
        if !p.options.is_empty() {
            let opts: Vec<String> = p
                .option_labels()
                .into_iter()
                .map(|l| format!("{l}={}", p.options.get(&l).copied().unwrap_or_default()))
                .collect();
            ty.push_str(&format!(": {}", opts.join(", ")));
        }
        let limits = match (p.min, p.max) {
            (Some(lo), Some(hi)) => {
                let how = match p.on_out_of_range {
                    OutOfRange::Clamp => "clamp",
                    OutOfRange::Refuse => "refuse",
                };
                format!("{lo:.1}–{hi:.1} ({how})")
            }
            _ => String::new(),
        };
        let register = if p.width() == 2 {
            format!(
                "{}–{} ({})",
                number(p.kind, p.address),
                number(p.kind, p.address + 1),
                p.address
            )
        } else {
            format!("{} ({})", number(p.kind, p.address), p.address)
        };
        let table = match p.kind {
            RegisterKind::Holding => "holding",
            RegisterKind::Input => "input",
            RegisterKind::Coil => "coil",
            RegisterKind::Discrete => "discrete",
        };
        out.push_str(&format!(
            "| `{}` | {} | {table} | {register} | {ty} | {} | {} | {limits} | {} |\n",
            p.name,
            if p.writable { "setting" } else { "reading" },
            p.scale,
            p.unit.as_deref().unwrap_or(""),
            p.description.as_deref().unwrap_or(""),
        ));
    }
    out
}
