//! Provisioned dashboards as data: their queries, their data source references, and the
//! structure Grafana needs to load them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

use super::{DATASOURCE_TYPE, DATASOURCE_UID, DEFAULT_MAX_DATA_POINTS};

/// One dashboard JSON file.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub path: PathBuf,
    pub uid: String,
    pub title: String,
    pub json: Value,
}

/// Where a query comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A panel's target.
    Panel,
    /// An annotation query of the dashboard.
    Annotation,
    /// A template variable's query.
    Variable,
}

/// A target's `format`: how Grafana reads the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    TimeSeries,
    Table,
}

/// One query of a dashboard, with what Grafana would run it with.
#[derive(Debug, Clone)]
pub struct DashboardQuery {
    /// The dashboard's uid.
    pub dashboard: String,
    pub kind: QueryKind,
    /// The panel title, annotation name or variable name.
    pub title: String,
    pub ref_id: String,
    pub raw_sql: String,
    pub format: Format,
    /// The panel's `maxDataPoints`, else [`DEFAULT_MAX_DATA_POINTS`] (its width).
    pub max_data_points: u32,
    /// The panel's "Min interval" (`interval`), if set.
    pub min_interval: Option<String>,
}

impl DashboardQuery {
    /// `dashboard/panel "title" A`, for messages.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            QueryKind::Panel => "panel",
            QueryKind::Annotation => "annotation",
            QueryKind::Variable => "variable",
        };
        format!("{}/{kind} {:?} {}", self.dashboard, self.title, self.ref_id)
    }
}

/// Every `*.json` in `dir`, by file name.
pub fn load_dashboards(dir: &Path) -> anyhow::Result<Vec<Dashboard>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let json: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            let uid = json["uid"]
                .as_str()
                .with_context(|| format!("{} has no uid", path.display()))?
                .to_owned();
            let title = json["title"].as_str().unwrap_or_default().to_owned();
            Ok(Dashboard {
                path,
                uid,
                title,
                json,
            })
        })
        .collect()
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or_default()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

impl Dashboard {
    /// Every panel that is not a row, rows' collapsed panels included.
    pub fn panels(&self) -> Vec<&Value> {
        fn walk<'a>(panels: &'a [Value], out: &mut Vec<&'a Value>) {
            for p in panels {
                if p["type"] == "row" {
                    walk(array(p, "panels"), out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(array(&self.json, "panels"), &mut out);
        out
    }

    fn annotations(&self) -> &[Value] {
        array(&self.json["annotations"], "list")
    }

    fn variables(&self) -> &[Value] {
        array(&self.json["templating"], "list")
    }

    /// Every data source reference: (where, the reference). Panels, their targets,
    /// annotations and query variables must each name one.
    pub fn datasource_refs(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for p in self.panels() {
            let targets = array(p, "targets");
            if targets.is_empty() {
                continue;
            }
            let title = text(&p["title"]);
            out.push((format!("panel {title:?}"), p["datasource"].clone()));
            for t in targets {
                out.push((
                    format!("panel {title:?} target {}", text(&t["refId"])),
                    t["datasource"].clone(),
                ));
            }
        }
        for a in self.annotations() {
            out.push((
                format!("annotation {:?}", text(&a["name"])),
                a["datasource"].clone(),
            ));
        }
        for v in self.variables() {
            if v["type"] == "query" {
                out.push((
                    format!("variable {:?}", text(&v["name"])),
                    v["datasource"].clone(),
                ));
            }
        }
        out
    }

    /// What keeps Grafana from loading the dashboard as meant, one line each: a data
    /// source other than [`DATASOURCE_UID`], panels without `gridPos`, overlapping or
    /// duplicate ids, targets not in code mode, SQL comments (newer Grafana versions strip
    /// them before expanding macros, older ones do not).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (place, ds) in self.datasource_refs() {
            if ds["uid"] != DATASOURCE_UID || ds["type"] != DATASOURCE_TYPE {
                out.push(format!(
                    "{place}: datasource {ds} is not {{\"type\": \"{DATASOURCE_TYPE}\", \"uid\": \"{DATASOURCE_UID}\"}}"
                ));
            }
        }
        if self.json["schemaVersion"].as_u64().unwrap_or(0) < 36 {
            out.push("schemaVersion below 36".to_owned());
        }
        let mut ids = BTreeSet::new();
        let mut boxes: Vec<(String, [u64; 4])> = Vec::new();
        for p in array(&self.json, "panels") {
            let title = text(&p["title"]);
            if !p["id"].as_u64().is_some_and(|id| ids.insert(id)) {
                out.push(format!("panel {title:?}: missing or duplicate id"));
            }
            let g = &p["gridPos"];
            let dims = ["x", "y", "w", "h"].map(|k| g[k].as_u64());
            let [Some(x), Some(y), Some(w), Some(h)] = dims else {
                out.push(format!("panel {title:?}: gridPos needs x, y, w, h"));
                continue;
            };
            if w == 0 || h == 0 || x + w > 24 {
                out.push(format!(
                    "panel {title:?}: gridPos {g} outside the 24 columns"
                ));
            }
            for (other, [ox, oy, ow, oh]) in &boxes {
                if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                    out.push(format!("panel {title:?} overlaps panel {other:?}"));
                }
            }
            boxes.push((title, [x, y, w, h]));
        }
        for p in self.panels() {
            let title = text(&p["title"]);
            if title.is_empty() {
                out.push(format!("a {} panel has no title", p["type"]));
            }
            let mut refs = BTreeSet::new();
            for t in array(p, "targets") {
                if !refs.insert(text(&t["refId"])) {
                    out.push(format!("panel {title:?}: duplicate refId {}", t["refId"]));
                }
                out.extend(target_problems(&format!("panel {title:?}"), t));
            }
        }
        for a in self.annotations() {
            out.extend(target_problems(
                &format!("annotation {:?}", text(&a["name"])),
                &a["target"],
            ));
        }
        out
    }

    /// Every query, in dashboard order: variables, annotations, panels.
    pub fn queries(&self) -> anyhow::Result<Vec<DashboardQuery>> {
        let mut out = Vec::new();
        let query = |kind, title: String, target: &Value, panel: Option<&Value>| {
            let raw_sql = target["rawSql"]
                .as_str()
                .with_context(|| format!("{}: {title:?} has no rawSql", self.uid))?
                .to_owned();
            let format = match target["format"].as_str() {
                Some("time_series") => Format::TimeSeries,
                Some("table") => Format::Table,
                other => anyhow::bail!("{}: {title:?} has format {other:?}", self.uid),
            };
            let max_data_points = panel
                .and_then(|p| p["maxDataPoints"].as_u64())
                .map_or(Ok(DEFAULT_MAX_DATA_POINTS), u32::try_from)?;
            let min_interval = panel
                .and_then(|p| p["interval"].as_str())
                .map(str::to_owned);
            Ok(DashboardQuery {
                dashboard: self.uid.clone(),
                kind,
                title,
                ref_id: text(&target["refId"]),
                raw_sql,
                format,
                max_data_points,
                min_interval,
            })
        };
        for v in self.variables() {
            if v["type"] != "query" {
                continue;
            }
            // A string (the classic form) or an object with the SQL in `rawSql`.
            let target = match &v["query"] {
                Value::String(sql) => {
                    serde_json::json!({ "rawSql": sql, "format": "table", "refId": "variable" })
                }
                other => {
                    let mut t = other.clone();
                    t["format"] = "table".into();
                    t
                }
            };
            out.push(query(QueryKind::Variable, text(&v["name"]), &target, None)?);
        }
        for a in self.annotations() {
            out.push(query(
                QueryKind::Annotation,
                text(&a["name"]),
                &a["target"],
                None,
            )?);
        }
        for p in self.panels() {
            for t in array(p, "targets") {
                out.push(query(QueryKind::Panel, text(&p["title"]), t, Some(p))?);
            }
        }
        Ok(out)
    }

    /// The names of the dashboard's template variables.
    pub fn variable_names(&self) -> Vec<String> {
        self.variables().iter().map(|v| text(&v["name"])).collect()
    }
}

fn target_problems(place: &str, t: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if t["refId"].as_str().is_none_or(str::is_empty) {
        out.push(format!("{place}: a target has no refId"));
    }
    if t["editorMode"] != "code" || t["rawQuery"] != true {
        out.push(format!(
            "{place}: target {} is not raw SQL in code mode (editorMode \"code\", rawQuery true)",
            t["refId"]
        ));
    }
    let sql = t["rawSql"].as_str().unwrap_or_default();
    if sql.contains("--") || sql.contains("/*") {
        out.push(format!("{place}: target {} has an SQL comment", t["refId"]));
    }
    out
}

/// Dashboards sharing a uid: uid → files.
pub fn duplicate_uids(dashboards: &[Dashboard]) -> BTreeMap<String, Vec<PathBuf>> {
    let mut by_uid: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for d in dashboards {
        by_uid
            .entry(d.uid.clone())
            .or_default()
            .push(d.path.clone());
    }
    by_uid.retain(|_, paths| paths.len() > 1);
    by_uid
}
