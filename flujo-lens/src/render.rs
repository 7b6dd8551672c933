//! The one place tables are drawn (nu-table): a grid with a header for `list`, and key/value
//! records for `show`. Cells arrive escaped (see `text.rs`); colour is added here, only when the
//! configuration allows it.

use nu_ansi_term::{Color, Style};
use nu_protocol::TableIndent;
use nu_table::{NuTable, TableTheme, TextStyle};

/// Display width of one character in the table (the measure nu-table itself uses).
pub(crate) fn char_width(c: char) -> usize {
    if c.is_ascii() {
        return usize::from(!c.is_ascii_control());
    }
    let mut buffer = [0u8; 4];
    nu_table::string_width(c.encode_utf8(&mut buffer))
}

/// Display width of a single-line text.
pub(crate) fn text_width(text: &str) -> usize {
    text.chars().map(char_width).sum()
}

/// How a cell is coloured when colour is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    Plain,
    Good,
    Bad,
    Busy,
    Quiet,
    /// Worth a look though nothing failed (a fallback was taken).
    Warn,
}

impl Tone {
    /// The tone of a run or step status.
    pub(crate) fn of_status(status: &str) -> Tone {
        match status {
            "completed" => Tone::Good,
            "failed" | "crashed" => Tone::Bad,
            "running" => Tone::Busy,
            "cancelled" => Tone::Quiet,
            _ => Tone::Plain,
        }
    }

    fn color(self) -> Option<Color> {
        match self {
            Tone::Plain => None,
            Tone::Good => Some(Color::Green),
            Tone::Bad => Some(Color::Red),
            Tone::Busy | Tone::Warn => Some(Color::Yellow),
            Tone::Quiet => Some(Color::DarkGray),
        }
    }
}

/// A table cell: escaped text (may hold line breaks) and its tone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cell {
    pub(crate) text: String,
    pub(crate) tone: Tone,
}

impl Cell {
    pub(crate) fn plain(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            tone: Tone::Plain,
        }
    }

    pub(crate) fn toned(text: impl Into<String>, tone: Tone) -> Cell {
        Cell {
            text: text.into(),
            tone,
        }
    }
}

/// `text` in the tone's colour when colour is on (for text outside tables).
pub(crate) fn paint(text: &str, tone: Tone, color: bool) -> String {
    match (color, tone.color()) {
        (true, Some(fg)) => fg.paint(text).to_string(),
        _ => text.to_owned(),
    }
}

/// A column of a grid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub(crate) header: &'static str,
    pub(crate) align: Align,
    /// Whether cells may be cut (with `…`) to make the grid fit, down to `MIN_SHRUNK` columns.
    pub(crate) shrink: bool,
    /// When the grid is too wide, columns are left out in this order (1 first); `None`: never.
    pub(crate) drop_order: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A shrinkable column is never cut below this many columns.
const MIN_SHRUNK: usize = 8;
/// Before leaving columns out, shrinkable ones are cut down to this many columns.
const COMFORTABLE_SHRUNK: usize = 16;
/// Columns of a grid are separated by this many spaces (no borders, no left padding).
const GRID_GAP: usize = 2;

/// Draws rows under a header line in at most `width` columns. When the rows are too wide,
/// shrinkable columns are cut to a comfortable width, then columns are left out in their
/// `drop_order`, then shrinkable columns are cut further.
pub(crate) fn grid(columns: &[Column], rows: &[Vec<Cell>], width: usize, color: bool) -> String {
    let kept = fit_columns(columns, rows, width);
    let mut table = NuTable::new(rows.len() + 1, kept.len());
    table.set_indent(TableIndent::new(0, GRID_GAP - 1));
    table.set_theme(TableTheme::light());
    table.set_structure(false, true, false);
    for (col, &(source, _)) in kept.iter().enumerate() {
        table.insert((0, col), columns[source].header.to_owned());
    }
    for (row, cells) in rows.iter().enumerate() {
        for (col, &(source, max_width)) in kept.iter().enumerate() {
            let cell = &cells[source];
            let text = if text_width(&cell.text) > max_width {
                cut_to(&cell.text, max_width)
            } else {
                cell.text.clone()
            };
            table.insert((row + 1, col), text);
            if let Some(style) = cell_style(columns[source].align, cell.tone, color) {
                table.insert_style((row + 1, col), style);
            }
        }
    }
    let header_style = if color {
        TextStyle::basic_left().bold(Some(true))
    } else {
        TextStyle::basic_left()
    };
    table.set_header_style(header_style);
    draw(table, width)
}

/// The columns that fit in `width`, each with the width its cells are cut to.
fn fit_columns(columns: &[Column], rows: &[Vec<Cell>], width: usize) -> Vec<(usize, usize)> {
    let mut kept: Vec<(usize, usize)> = columns
        .iter()
        .enumerate()
        .map(|(col, column)| {
            let natural = rows
                .iter()
                .map(|row| text_width(&row[col].text))
                .chain([text_width(column.header)])
                .max()
                .unwrap_or(0);
            (col, natural)
        })
        .collect();
    // each column is followed by its padding and a blank separator; the last one by padding only
    let total = |kept: &[(usize, usize)]| {
        kept.iter()
            .map(|(_, w)| w + GRID_GAP)
            .sum::<usize>()
            .saturating_sub(1)
    };
    let shrink = |kept: &mut Vec<(usize, usize)>, floor: usize| {
        let mut excess = total(kept).saturating_sub(width);
        while excess > 0 {
            let widest = kept
                .iter_mut()
                .filter(|(col, w)| columns[*col].shrink && *w > floor)
                .max_by_key(|(_, w)| *w);
            let Some((_, w)) = widest else { break };
            *w -= 1;
            excess -= 1;
        }
    };
    shrink(&mut kept, COMFORTABLE_SHRUNK);
    let mut droppable: Vec<(u8, usize)> = columns
        .iter()
        .enumerate()
        .filter_map(|(col, column)| column.drop_order.map(|order| (order, col)))
        .collect();
    droppable.sort();
    for (_, col) in droppable {
        if total(&kept) <= width {
            break;
        }
        kept.retain(|(kept_col, _)| *kept_col != col);
    }
    shrink(&mut kept, MIN_SHRUNK);
    kept
}

/// Draws `(key, value)` rows as a two-column record with a frame, in at most `width` columns.
/// Values must already be wrapped to [`record_value_width`].
pub(crate) fn record(rows: &[(&str, Cell)], width: usize, color: bool) -> String {
    let mut table = NuTable::new(rows.len(), 2);
    table.set_theme(TableTheme::rounded());
    table.set_structure(false, false, false);
    for (row, (key, value)) in rows.iter().enumerate() {
        table.insert((row, 0), (*key).to_owned());
        table.insert((row, 1), value.text.clone());
        if let Some(style) = cell_style(Align::Left, value.tone, color) {
            table.insert_style((row, 1), style);
        }
        if color {
            table.insert_style((row, 0), TextStyle::basic_left().bold(Some(true)));
        }
    }
    draw(table, width)
}

/// The columns left for values in a [`record`] of `width` whose longest key is `key_width`.
pub(crate) fn record_value_width(width: usize, key_width: usize) -> usize {
    // │ key │ value │ : three borders and four spaces of padding
    width.saturating_sub(key_width + 7).max(8)
}

fn cell_style(align: Align, tone: Tone, color: bool) -> Option<TextStyle> {
    let base = match align {
        Align::Left => TextStyle::basic_left(),
        Align::Right => TextStyle::basic_right(),
    };
    match (color, tone.color()) {
        (true, Some(fg)) => Some(base.style(Style::new().fg(fg))),
        _ if align == Align::Right => Some(base),
        _ => None,
    }
}

fn draw(table: NuTable, width: usize) -> String {
    let fallback = table.clone();
    let mut drawn = table
        .draw(width)
        .or_else(|| fallback.draw_unchecked(width))
        .unwrap_or_default();
    // trailing spaces make snapshots and copy-paste noisy
    drawn = drawn
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    drawn
}

/// The first characters of `text` that fit in `width - 1` columns, then `…`.
pub(crate) fn cut_to(text: &str, width: usize) -> String {
    let mut cut = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = char_width(c);
        if used + w + 1 > width {
            break;
        }
        used += w;
        cut.push(c);
    }
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<Column> {
        vec![
            Column {
                header: "name",
                align: Align::Left,
                shrink: true,
                drop_order: None,
            },
            Column {
                header: "status",
                align: Align::Left,
                shrink: false,
                drop_order: None,
            },
            Column {
                header: "n",
                align: Align::Right,
                shrink: false,
                drop_order: Some(1),
            },
        ]
    }

    #[test]
    fn grid_without_colour_has_no_escape_codes() {
        let rows = vec![vec![
            Cell::plain("a-rather-long-pipeline-name"),
            Cell::toned("failed", Tone::Bad),
            Cell::plain("12"),
        ]];
        let drawn = grid(&columns(), &rows, 80, false);
        assert!(!drawn.contains('\u{1b}'), "{drawn}");
        assert!(drawn.contains("a-rather-long-pipeline-name"), "{drawn}");
        let coloured = grid(&columns(), &rows, 80, true);
        assert!(coloured.contains("\u{1b}[31m"), "{coloured}");
    }

    #[test]
    fn shrinkable_columns_are_cut_to_fit() {
        let rows = vec![vec![
            Cell::plain("x".repeat(100)),
            Cell::plain("completed"),
            Cell::plain("1"),
        ]];
        let drawn = grid(&columns(), &rows, 40, false);
        for line in drawn.lines() {
            assert!(text_width(line) <= 40, "{drawn}");
        }
        assert!(drawn.contains("x…"), "{drawn}");
        assert!(drawn.contains("completed"), "{drawn}");
        assert!(drawn.contains(" n"), "{drawn}");
        // too narrow for every column: `n` is left out before `name` is cut below 16
        let drawn = grid(&columns(), &rows, 28, false);
        assert!(!drawn.contains(" n"), "{drawn}");
        assert!(drawn.contains(&format!("{}…", "x".repeat(15))), "{drawn}");
    }

    #[test]
    fn record_values_fill_the_width() {
        let value = "v".repeat(record_value_width(50, 6));
        let drawn = record(&[("output", Cell::plain(value.clone()))], 50, false);
        assert!(drawn.contains(&value), "{drawn}");
        assert!(drawn.lines().all(|line| text_width(line) == 50), "{drawn}");
    }
}
