//! Small CSV files: one numeric column, one name per line, and a writer.
//!
//! Fields may be quoted with `"` (a doubled `""` inside stands for one
//! quote); quoted fields cannot span lines. Lines may end in `\n` or
//! `\r\n`; a UTF-8 byte order mark is skipped.

use std::io::Write;
use std::path::Path;

use super::{format_error, read_file, write_atomic};
use crate::{L0Error, Result};

/// Reads a file as UTF-8 text without a leading byte order mark.
fn read_text(path: &Path) -> Result<String> {
    let bytes = read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format_error(
            path,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Splits one CSV line into its fields, unquoting quoted ones. Unquoted
/// fields are trimmed of surrounding whitespace.
fn split_fields(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field".into()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected '{c}' after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim().to_string());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field.trim().to_string());
        }
    }
}

/// The lines of `text` with their 1-based numbers, `\r` removed, without
/// the blank lines at the end of the file.
fn numbered_lines(text: &str) -> Vec<(usize, &str)> {
    let mut lines: Vec<(usize, &str)> = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .collect();
    while lines.last().is_some_and(|(_, l)| l.trim().is_empty()) {
        lines.pop();
    }
    lines
}

/// The single field of a one-column line.
fn single_field(path: &Path, number: usize, line: &str, hint: &str) -> Result<String> {
    let mut fields =
        split_fields(line).map_err(|m| format_error(path, format!("line {number}: {m}")))?;
    if fields.len() != 1 {
        return Err(format_error(
            path,
            format!(
                "line {number}: expected one column, found {} ({hint})",
                fields.len()
            ),
        ));
    }
    Ok(fields.pop().unwrap_or_default())
}

/// Reads a one-column numeric CSV. The first line is taken as a header
/// (and skipped) when its field does not parse as a number. Blank lines at
/// the end are ignored; a blank line elsewhere is an error (pandas writes
/// missing values that way). Values are not checked for finiteness (see
/// [`super::read_vector`], which does).
pub fn read_f64_column(path: &Path) -> Result<Vec<f64>> {
    read_column(path, |field| {
        field
            .parse::<f64>()
            .map_err(|_| format!("cannot parse '{field}' as a number"))
    })
}

/// Reads a one-column CSV of integer labels (group ids) as `i64`, every
/// `i64` exact; whole numbers written as floats (`3.0`) are taken too.
/// Otherwise as [`read_f64_column`].
pub fn read_i64_column(path: &Path) -> Result<Vec<i64>> {
    read_column(path, |field| {
        field
            .parse::<i64>()
            .or_else(|_| match field.parse::<f64>() {
                Ok(x) => super::whole_i64(x).ok_or(format!("expected an integer, got '{field}'")),
                Err(_) => Err(format!("cannot parse '{field}' as an integer")),
            })
    })
}

/// Reads a one-column CSV, each value by `parse` (its error: what is
/// wrong with the field); a first line that does not parse as a number is
/// a header.
fn read_column<T>(
    path: &Path,
    parse: impl Fn(&str) -> std::result::Result<T, String>,
) -> Result<Vec<T>> {
    let text = read_text(path)?;
    let mut values = Vec::new();
    for (k, (number, line)) in numbered_lines(&text).into_iter().enumerate() {
        if line.trim().is_empty() {
            return Err(format_error(
                path,
                format!("line {number}: empty line (a missing value?)"),
            ));
        }
        let field = single_field(
            path,
            number,
            line,
            "write a single column, e.g. pandas to_csv(index=False)",
        )?;
        match parse(&field) {
            Ok(v) => values.push(v),
            Err(_) if k == 0 && field.parse::<f64>().is_err() => {} // a header
            Err(_) if field.is_empty() => {
                return Err(format_error(
                    path,
                    format!("line {number}: empty value (a missing value?)"),
                ))
            }
            Err(why) => return Err(format_error(path, format!("line {number}: {why}"))),
        }
    }
    Ok(values)
}

/// Reads the column named `name` of a CSV file whose first line is a
/// header, such as the `weight` column of the `weights.csv` that
/// `l0 calibrate` writes. A one-column file is read as by
/// [`read_f64_column`], whatever its header.
pub fn read_f64_named_column(path: &Path, name: &str) -> Result<Vec<f64>> {
    let text = read_text(path)?;
    let lines = numbered_lines(&text);
    let Some((first, header)) = lines.first() else {
        return Ok(Vec::new());
    };
    let header =
        split_fields(header).map_err(|m| format_error(path, format!("line {first}: {m}")))?;
    if header.len() == 1 {
        return read_f64_column(path);
    }
    let k = header.iter().position(|h| h == name).ok_or_else(|| {
        format_error(
            path,
            format!(
                "line {first}: no '{name}' column among {}",
                header.join(", ")
            ),
        )
    })?;
    lines[1..]
        .iter()
        .map(|&(number, line)| {
            let fields = split_fields(line)
                .map_err(|m| format_error(path, format!("line {number}: {m}")))?;
            if fields.len() != header.len() {
                return Err(format_error(
                    path,
                    format!(
                        "line {number}: expected {} columns as in the header, found {}",
                        header.len(),
                        fields.len()
                    ),
                ));
            }
            fields[k].parse::<f64>().map_err(|_| {
                format_error(
                    path,
                    format!("line {number}: cannot parse '{}' as a number", fields[k]),
                )
            })
        })
        .collect()
}

/// Reads one name per line (e.g. target names), in order. Every non-blank
/// line is a name, a header line included (`l0 calibrate` drops a first
/// line when the file has one name more than the matrix has rows). A name
/// containing a comma must be quoted.
pub fn read_names(path: &Path) -> Result<Vec<String>> {
    let text = read_text(path)?;
    let mut names = Vec::new();
    for (number, line) in numbered_lines(&text) {
        if line.trim().is_empty() {
            continue;
        }
        names.push(single_field(
            path,
            number,
            line,
            "quote names that contain commas",
        )?);
    }
    Ok(names)
}

/// Quotes a field if it needs it.
pub(crate) fn csv_field(field: &str) -> std::borrow::Cow<'_, str> {
    let needs_quotes = field.contains([',', '"', '\n', '\r'])
        || field.starts_with([' ', '\t'])
        || field.ends_with([' ', '\t']);
    if needs_quotes {
        format!("\"{}\"", field.replace('"', "\"\"")).into()
    } else {
        field.into()
    }
}

/// Writes a CSV file atomically (see [`super::write_atomic`]): the header
/// line (skipped when `header` is empty), then one line per row, fields
/// quoted where needed. With a header, every row must have as many fields
/// as the header ([`L0Error::Shape`] otherwise, and nothing is written).
/// Format floats with `{:?}`, which round-trips exactly.
pub fn write_csv<I>(path: &Path, header: &[&str], rows: I) -> Result<()>
where
    I: IntoIterator<Item = Vec<String>>,
{
    let mut bad_row: Option<L0Error> = None;
    let result = write_atomic(path, |w| {
        let write_line = |w: &mut dyn Write, fields: &mut dyn Iterator<Item = &str>| {
            let mut first = true;
            for f in fields {
                if !first {
                    w.write_all(b",")?;
                }
                first = false;
                w.write_all(csv_field(f).as_bytes())?;
            }
            w.write_all(b"\n")
        };
        if !header.is_empty() {
            write_line(w, &mut header.iter().copied())?;
        }
        for (i, row) in rows.into_iter().enumerate() {
            if !header.is_empty() && row.len() != header.len() {
                bad_row = Some(L0Error::shape(
                    format!(
                        "{}: fields in row {} (one per header column)",
                        path.display(),
                        i + 1
                    ),
                    header.len(),
                    row.len(),
                ));
                return Err(std::io::Error::other("row length"));
            }
            write_line(w, &mut row.iter().map(String::as_str))?;
        }
        Ok(())
    });
    match bad_row {
        Some(e) => Err(e),
        None => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        assert_eq!(split_fields("a").unwrap(), vec!["a"]);
        assert_eq!(split_fields(" a , b ").unwrap(), vec!["a", "b"]);
        assert_eq!(split_fields("\"x, \"\"y\"\"\"").unwrap(), vec!["x, \"y\""]);
        assert_eq!(split_fields("\"a\" ,b").unwrap(), vec!["a", "b"]);
        assert_eq!(split_fields("a,").unwrap(), vec!["a", ""]);
        assert_eq!(split_fields("").unwrap(), vec![""]);
        assert_eq!(
            split_fields("\"a").unwrap_err(),
            "unterminated quoted field"
        );
        assert_eq!(
            split_fields("\"a\"b").unwrap_err(),
            "unexpected 'b' after a quoted field"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field(" lead"), "\" lead\"");
        for s in ["a,b", "say \"hi\"", " lead", "tail ", "x"] {
            assert_eq!(split_fields(&csv_field(s)).unwrap(), vec![s]);
        }
    }
}
