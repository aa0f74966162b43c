//! Memory sizes as users write them (`80GiB`, `80GB`, `24GiB`, `141GB`) and as the plan prints
//! them.

/// Binary and decimal units, longest suffix first so that `GiB` is not read as `B`.
const UNITS: [(&str, f64); 9] = [
    ("kib", 1024.0),
    ("mib", 1024.0 * 1024.0),
    ("gib", 1024.0 * 1024.0 * 1024.0),
    ("tib", 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ("kb", 1e3),
    ("mb", 1e6),
    ("gb", 1e9),
    ("tb", 1e12),
    ("b", 1.0),
];

/// Bytes in one GiB.
pub const GIB: u64 = 1 << 30;

/// Parses a memory size: a positive number and a unit, e.g. `80GiB` (binary: 2^30 bytes per
/// GiB), `80GB` (decimal: 10^9), `1.5TiB`, `512 MiB`, `24gib`. The unit is required (a bare
/// number would be ambiguous) and case-insensitive; `B`, `KB`, `MB`, `GB`, `TB` are decimal,
/// `KiB`, `MiB`, `GiB`, `TiB` binary.
///
/// ```
/// use align_train::plan::parse_memory_size;
/// assert_eq!(parse_memory_size("80GiB"), Ok(80 << 30));
/// assert_eq!(parse_memory_size("141GB"), Ok(141_000_000_000));
/// assert!(parse_memory_size("80").unwrap_err().contains("unit"));
/// ```
pub fn parse_memory_size(text: &str) -> Result<u64, String> {
    let hint = "write a number and a unit, e.g. 80GiB, 80GB, 24GiB or 141GB (GB = 10^9 bytes, GiB = 2^30)";
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let Some((suffix, scale)) = UNITS.iter().find(|(u, _)| lower.ends_with(u)) else {
        return Err(format!("`{text}` has no unit: {hint}"));
    };
    let number = lower[..lower.len() - suffix.len()].trim();
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a memory size: {hint}"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("`{text}`: the size must be a positive number: {hint}"));
    }
    let bytes = value * scale;
    if bytes < 1.0 || bytes > u64::MAX as f64 / 2.0 {
        return Err(format!("`{text}` is out of range: {hint}"));
    }
    Ok(bytes.round() as u64)
}

/// `bytes` in GiB with two decimals, e.g. `14.19 GiB` (`0` for zero).
pub fn format_gib(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    format!("{:.2} GiB", bytes as f64 / GIB as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_units() {
        assert_eq!(parse_memory_size("80GiB"), Ok(80 * GIB));
        assert_eq!(parse_memory_size("80GB"), Ok(80_000_000_000));
        assert_eq!(parse_memory_size("24GiB"), Ok(24 * GIB));
        assert_eq!(parse_memory_size("141GB"), Ok(141_000_000_000));
        assert_eq!(parse_memory_size(" 1.5 TiB "), Ok(3 * (1u64 << 39)));
        assert_eq!(parse_memory_size("512mib"), Ok(512 << 20));
        assert_eq!(parse_memory_size("100B"), Ok(100));
        assert_eq!(parse_memory_size("2kB"), Ok(2000));
    }

    #[test]
    fn bad_text_is_explained() {
        for bad in ["80", "", "GiB", "eighty GiB", "-4GiB", "0GB", "1e400GiB", "80 GiBs", "nanGB"] {
            let e = parse_memory_size(bad).unwrap_err();
            assert!(e.contains("e.g. 80GiB"), "{bad}: {e}");
        }
        assert!(parse_memory_size("80").unwrap_err().contains("no unit"));
    }

    #[test]
    fn gib_format() {
        assert_eq!(format_gib(0), "0");
        assert_eq!(format_gib(3 * GIB / 2), "1.50 GiB");
    }
}
