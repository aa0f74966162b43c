//! The Markdown text of a report: per-language tables (runs as rows, languages as columns,
//! then `avg` and `var`), the collinearity-by-layer tables and the training summary, each
//! with its chart below when one was drawn. Columns are padded so the text reads as a table
//! in a terminal too.

use super::plots::Plot;
use super::{ReportOptions, RunSummary};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Mean and (population) variance of the values of `languages` in `values` (languages
/// without a value are left out); NaN for both when none has one.
pub fn mean_and_variance(values: &BTreeMap<String, f64>, languages: &[String]) -> (f64, f64) {
    let xs: Vec<f64> = languages.iter().filter_map(|l| values.get(l)).copied().collect();
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
    (mean, var)
}

/// A cell: the value with `decimals` digits, `–` when absent or not finite.
fn cell(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => "–".to_string(),
    }
}

/// A Markdown table with padded columns: the first column left-aligned, the others right.
fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).chain([header[c].chars().count(), 3]).max().unwrap_or(3))
        .collect();
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, s)| {
                let pad = " ".repeat(widths[c] - s.chars().count());
                if c == 0 {
                    format!("{s}{pad}")
                } else {
                    format!("{pad}{s}")
                }
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(c, &w)| if c == 0 { format!(":{}", "-".repeat(w + 1)) } else { format!("{}:", "-".repeat(w + 1)) })
        .collect();
    let mut s = line(header);
    let _ = writeln!(s, "|{}|", rule.join("|"));
    for r in rows {
        s.push_str(&line(r));
    }
    s
}

/// One per-language table: a row per run that has the metric.
fn language_table(
    runs: &[RunSummary],
    languages: &[String],
    get: &dyn Fn(&RunSummary) -> Option<&BTreeMap<String, f64>>,
) -> Option<String> {
    let mut header = vec!["run".to_string()];
    header.extend(languages.iter().cloned());
    header.extend(["avg".to_string(), "var".to_string()]);
    let rows: Vec<Vec<String>> = runs
        .iter()
        .filter_map(|r| get(r).map(|values| (r, values)))
        .map(|(r, values)| {
            let mut row = vec![r.name.clone()];
            row.extend(languages.iter().map(|l| cell(values.get(l).copied(), 3)));
            let (mean, var) = mean_and_variance(values, languages);
            row.extend([cell(Some(mean), 3), cell(Some(var), 4)]);
            row
        })
        .collect();
    (!rows.is_empty()).then(|| table(&header, &rows))
}

/// The collinearity tables: ratio and centred ratio by layer, with each run's floor.
fn consistency_tables(runs: &[RunSummary]) -> Option<String> {
    let with: Vec<&RunSummary> = runs.iter().filter(|r| r.consistency.is_some()).collect();
    if with.is_empty() {
        return None;
    }
    let mut layers: Vec<usize> =
        with.iter().flat_map(|r| r.consistency.as_ref().unwrap().layers.iter().map(|l| l.layer)).collect();
    layers.sort_unstable();
    layers.dedup();
    let mut s = String::new();
    for (centred, title) in [(false, "collinearity ratio"), (true, "centred collinearity ratio")] {
        let mut header = vec!["run".to_string()];
        header.extend(layers.iter().map(|l| format!("layer {l}")));
        header.push("floor".to_string());
        let rows: Vec<Vec<String>> = with
            .iter()
            .map(|r| {
                let c = r.consistency.as_ref().unwrap();
                let mut row = vec![r.name.clone()];
                row.extend(layers.iter().map(|&layer| {
                    let at = c.layers.iter().find(|l| l.layer == layer);
                    cell(at.map(|l| if centred { l.centred_collinearity_ratio } else { l.collinearity_ratio }), 3)
                }));
                row.push(cell(Some(c.orthogonal_ratio), 3));
                row
            })
            .collect();
        let _ = writeln!(s, "{}:\n", capitalise(title));
        s.push_str(&table(&header, &rows));
        s.push('\n');
    }
    s.pop();
    Some(s)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The training summary: the last logged step's loss and terms, tokens and seconds summed.
fn training_table(runs: &[RunSummary]) -> Option<String> {
    let with: Vec<(&RunSummary, &Vec<BTreeMap<String, f64>>)> =
        runs.iter().filter_map(|r| r.training.as_ref().filter(|t| !t.is_empty()).map(|t| (r, t))).collect();
    if with.is_empty() {
        return None;
    }
    let mut terms: Vec<String> =
        with.iter().flat_map(|(_, t)| t.last().unwrap().keys().filter(|k| k.starts_with("loss/")).cloned()).collect();
    terms.sort();
    terms.dedup();
    let mut header = vec!["run".to_string(), "steps".to_string(), "loss".to_string()];
    header.extend(terms.iter().cloned());
    header.extend(["tokens".to_string(), "step time s".to_string()]);
    let rows: Vec<Vec<String>> = with
        .iter()
        .map(|(r, lines)| {
            let last = lines.last().unwrap();
            let sum = |key: &str| lines.iter().filter_map(|l| l.get(key)).sum::<f64>();
            let mut row = vec![r.name.clone(), cell(last.get("step").copied(), 0), cell(last.get("loss").copied(), 4)];
            row.extend(terms.iter().map(|t| cell(last.get(t).copied(), 4)));
            row.extend([cell(Some(sum("tokens")), 0), cell(Some(sum("step_time_s")), 1)]);
            row
        })
        .collect();
    Some(table(&header, &rows))
}

/// The report's Markdown: title, introduction, then one section per metric that any run has,
/// each with its table and, when `plots` has one for it, its chart; last the files read.
pub fn render_markdown(runs: &[RunSummary], options: &ReportOptions, plots: &[Plot]) -> String {
    let languages = options.languages_of(runs);
    let mut s = format!("# {}\n\n", options.title);
    for paragraph in &options.intro {
        let _ = writeln!(s, "{paragraph}\n");
    }
    let section = |s: &mut String, key: &str, title: &str, note: &str, body: Option<String>| {
        let Some(body) = body else { return };
        let _ = writeln!(s, "## {title}\n");
        if !note.is_empty() {
            let _ = writeln!(s, "{note}\n");
        }
        s.push_str(&body);
        s.push('\n');
        for p in plots.iter().filter(|p| p.key == key) {
            let _ = writeln!(s, "![{}]({})\n", p.title, p.file);
        }
    };
    let avg_note = "Columns: languages, then the average and the (population) variance over them.";
    section(
        &mut s,
        "asr",
        "Attack success rate (lower is safer)",
        avg_note,
        language_table(runs, &languages, &|r| r.attack_success_rate.as_ref()),
    );
    let mut metrics: Vec<&str> = runs.iter().filter_map(|r| r.utility.as_ref().map(|u| u.metric.as_str())).collect();
    metrics.dedup();
    metrics.sort_unstable();
    metrics.dedup();
    for metric in metrics {
        let key = format!("utility:{metric}");
        let table = language_table(runs, &languages, &|r| r.utility_accuracy(metric));
        section(&mut s, &key, &options.utility_title(metric), avg_note, table);
    }
    section(
        &mut s,
        "reward_gap",
        "Reward gap (chosen minus rejected average log-prob; higher prefers the chosen)",
        avg_note,
        language_table(runs, &languages, &|r| r.reward_gap.as_ref()),
    );
    section(
        &mut s,
        "collinearity",
        "Collinearity of language variants by layer",
        "`s1^2 / sum s_i^2` of each prompt's language variants at the last prompt token (1 = collinear; \
         `floor` = orthogonal variants); the centred ratio subtracts the mean state over all prompts first.",
        consistency_tables(runs),
    );
    section(
        &mut s,
        "training",
        "Training",
        "The last logged optimizer step (`loss` and each term's unweighted `loss/<term>`), with `tokens` and \
         `step_time_s` summed over the run.",
        training_table(runs),
    );
    let read: Vec<String> = runs
        .iter()
        .filter(|r| !r.files.is_empty())
        .map(|r| {
            let files: Vec<String> = r.files.iter().map(|f| format!("`{}`", f.display())).collect();
            format!("- {}: {}", r.name, files.join(", "))
        })
        .collect();
    if !read.is_empty() {
        let _ = writeln!(s, "## Sources\n\n{}", read.join("\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_and_align_numbers_right() {
        let t =
            table(&["run".into(), "en".into()], &[vec!["base".into(), "0.500".into()], vec!["x".into(), "–".into()]]);
        assert_eq!(t, "| run  |    en |\n|:-----|------:|\n| base | 0.500 |\n| x    |     – |\n");
    }
}
