//! Numbers in model answers, read the way a grader of grade-school math reads them: the last
//! number of a completion is its answer (the MGSM convention, Shi et al. 2023).
//!
//! Normalisation, so that `2,125`, `2.125` (German), `2 125` (French), `২১২৫` (Bengali) and
//! `๒๑๒๕` (Thai) are all 2125:
//!
//! - **Digits** of every script in [`DIGIT_ZEROS`] (Unicode decimal digits: Arabic-Indic,
//!   Devanagari, Bengali, Telugu, Thai, fullwidth, ...) count as their ASCII values.
//! - **Group separators** between digit runs: `,` `.` (and their fullwidth forms `，` `．`),
//!   `'`, `٬` and the spaces U+0020, U+00A0, U+2009, U+202F. A space or apostrophe joins only a following group of exactly three
//!   digits, so "5 10" stays two numbers.
//! - **Decimal mark**: the last `,` or `.` of a number is the decimal mark when the digits
//!   after it are not three (`2,5` = 2.5, `1.25` = 1.25), when a different one of the two came
//!   before it (`1,234.5`, `1.234,5`), when the digits before it cannot be a thousands group
//!   (`1234.567`), or when it is the Arabic decimal separator `٫`. Otherwise a `,` or `.`
//!   followed by exactly three digits is a thousands separator (`1,234` = `1.234` = 1234):
//!   MGSM's answers are integers, and this reading keeps them so.
//! - Inner groups of two digits are accepted (Indian grouping, `1,23,456`). A number whose
//!   separators fit none of these rules (a date `12.05.2023`, a version `1.2.3`) is read as
//!   its digit runs, each a number.
//! - A `-` or `−` (U+2212) directly before the digits, and not after a letter or digit, makes
//!   the number negative.
//!
//! Not read: numbers written as words ("eighteen", "十八"), fractions (`1/2` is 1 and 2).

/// The zero of each run of ten Unicode decimal digits that [`digit_value`] reads, besides
/// ASCII: Arabic-Indic, Extended Arabic-Indic, NKo, Devanagari, Bengali, Gurmukhi, Gujarati,
/// Oriya, Tamil, Telugu, Kannada, Malayalam, Sinhala, Thai, Lao, Tibetan, Myanmar, Khmer,
/// Mongolian, fullwidth.
pub const DIGIT_ZEROS: [char; 20] = [
    '\u{0660}', '\u{06F0}', '\u{07C0}', '\u{0966}', '\u{09E6}', '\u{0A66}', '\u{0AE6}', '\u{0B66}', '\u{0BE6}',
    '\u{0C66}', '\u{0CE6}', '\u{0D66}', '\u{0DE6}', '\u{0E50}', '\u{0ED0}', '\u{0F20}', '\u{1040}', '\u{17E0}',
    '\u{1810}', '\u{FF10}',
];

/// The value of a decimal digit of any script in [`DIGIT_ZEROS`] or ASCII.
pub fn digit_value(c: char) -> Option<u8> {
    if c.is_ascii_digit() {
        return Some(c as u8 - b'0');
    }
    let code = c as u32;
    DIGIT_ZEROS.iter().map(|&z| z as u32).find(|&z| (z..z + 10).contains(&code)).map(|z| (code - z) as u8)
}

/// Separators that may join digit groups inside one number.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        ',' | '.'
            | '\''
            | '\u{066B}'
            | '\u{066C}'
            | '\u{FF0C}'
            | '\u{FF0E}'
            | ' '
            | '\u{00A0}'
            | '\u{2009}'
            | '\u{202F}'
    )
}

/// The fullwidth comma and full stop (CJK text) as their ASCII forms.
fn ascii_separator(c: char) -> char {
    match c {
        '\u{FF0C}' => ',',
        '\u{FF0E}' => '.',
        c => c,
    }
}

/// Separators that only join a following group of exactly three digits.
fn needs_three(c: char) -> bool {
    matches!(c, '\'' | ' ' | '\u{00A0}' | '\u{2009}' | '\u{202F}' | '\u{066C}')
}

/// A run of digits with the separator before it (`None` for the first run).
#[derive(Debug, Clone)]
struct Group {
    separator: Option<char>,
    digits: String,
}

/// Every number in `text`, in order, normalised (module docs).
pub fn numbers_in(text: &str) -> Vec<f64> {
    let chars: Vec<char> = text.chars().collect();
    let mut numbers = vec![];
    let mut i = 0;
    while i < chars.len() {
        if digit_value(chars[i]).is_none() {
            i += 1;
            continue;
        }
        let negative = i > 0 && matches!(chars[i - 1], '-' | '\u{2212}') && (i < 2 || !chars[i - 2].is_alphanumeric());
        let (groups, end) = read_groups(&chars, i);
        numbers
            .extend(interpret(&groups).into_iter().enumerate().map(|(k, x)| if k == 0 && negative { -x } else { x }));
        i = end;
    }
    numbers
}

/// The last number of `text` ([`numbers_in`]), or `None` when it has none.
pub fn last_number(text: &str) -> Option<f64> {
    numbers_in(text).pop()
}

/// `text` read as exactly one number (surrounding whitespace allowed), e.g. an answer field
/// `"2,125"`; `None` when it holds anything else.
pub fn parse_number(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    let first = trimmed.chars().position(|c| digit_value(c).is_some())?;
    let sign: String = trimmed.chars().take(first).collect();
    if !(sign.is_empty() || sign == "-" || sign == "\u{2212}") {
        return None;
    }
    let chars: Vec<char> = trimmed.chars().collect();
    let (groups, end) = read_groups(&chars, first);
    let values = interpret(&groups);
    if end != chars.len() || values.len() != 1 {
        return None;
    }
    Some(if sign.is_empty() { values[0] } else { -values[0] })
}

/// The digit groups of the number starting at `start` (a digit), and the index after it.
fn read_groups(chars: &[char], start: usize) -> (Vec<Group>, usize) {
    let digits_from = |mut j: usize| -> (String, usize) {
        let mut s = String::new();
        while let Some(d) = chars.get(j).and_then(|&c| digit_value(c)) {
            s.push((b'0' + d) as char);
            j += 1;
        }
        (s, j)
    };
    let (first, mut end) = digits_from(start);
    let mut groups = vec![Group { separator: None, digits: first }];
    while end + 1 < chars.len() && is_separator(chars[end]) && digit_value(chars[end + 1]).is_some() {
        let separator = ascii_separator(chars[end]);
        let (digits, next) = digits_from(end + 1);
        if needs_three(separator) && (digits.len() != 3 || groups[0].digits.len() > 3) {
            break;
        }
        groups.push(Group { separator: Some(separator), digits });
        end = next;
    }
    (groups, end)
}

/// The value(s) of one run of digit groups: one number, or each group alone when the
/// separators do not make a number.
fn interpret(groups: &[Group]) -> Vec<f64> {
    match value_of(groups) {
        Some(x) => vec![x],
        None => groups.iter().filter_map(|g| g.digits.parse().ok()).collect(),
    }
}

/// The value of digit groups read as one number, `None` when the separators are inconsistent.
fn value_of(groups: &[Group]) -> Option<f64> {
    let (last, rest) = groups.split_last()?;
    let Some(mark) = last.separator else { return last.digits.parse().ok() };
    let can_be_decimal = matches!(mark, ',' | '.' | '\u{066B}');
    let other_mark_before = rest.iter().any(|g| matches!(g.separator, Some(s @ (',' | '.')) if s != mark));
    let decimal_first = mark == '\u{066B}' || (can_be_decimal && (last.digits.len() != 3 || other_mark_before));
    if !decimal_first {
        if let Some(integer) = grouped_integer(groups) {
            return integer.parse().ok();
        }
    }
    if !can_be_decimal || rest.iter().any(|g| g.separator == Some(mark)) {
        return None;
    }
    let integer = grouped_integer(rest)?;
    format!("{integer}.{}", last.digits).parse().ok()
}

/// The digits of groups that form an integer with thousands separators (the first group of
/// 1 to 3 digits, inner groups of 2 or 3, the last of 3), or `None`.
fn grouped_integer(groups: &[Group]) -> Option<String> {
    if groups.len() > 1 && groups[0].digits.len() > 3 {
        return None;
    }
    let mut digits = String::new();
    for (k, g) in groups.iter().enumerate() {
        if let Some(s) = g.separator {
            let fits = if k + 1 == groups.len() { g.digits.len() == 3 } else { (2..=3).contains(&g.digits.len()) };
            if !fits || s == '\u{066B}' {
                return None;
            }
        }
        digits.push_str(&g.digits);
    }
    Some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs_of_every_listed_script_read_as_ascii() {
        for &zero in &DIGIT_ZEROS {
            for k in 0..10u8 {
                let c = char::from_u32(zero as u32 + k as u32).unwrap();
                assert_eq!(digit_value(c), Some(k), "{zero:?} + {k}");
            }
        }
        assert_eq!(digit_value('x'), None);
        assert_eq!(digit_value('½'), None);
    }
}
