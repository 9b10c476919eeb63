//! Plain-text tables for the admin commands: a header row, left-aligned text and
//! right-aligned numbers, columns two spaces apart.

/// A table being built.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(headers: I) -> Table {
        Table { headers: headers.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// Adds a row (missing cells print empty; extra ones are dropped).
    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines, each ending in a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        // A column whose cells are all numbers (or empty, or "-") is right-aligned.
        let numeric: Vec<bool> = (0..widths.len())
            .map(|c| {
                self.rows.iter().all(|r| {
                    let v = r[c].replace(',', "");
                    v.is_empty() || v == "-" || v.parse::<f64>().is_ok()
                })
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[c] - cell.chars().count());
                if numeric[c] {
                    line.push_str(&pad);
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_numbers_go_right() {
        let mut t = Table::new(["GROUP", "QUEUE", "LAG"]);
        t.row(["broker-a", "0", "12"]);
        t.row(["b", "10", "3"]);
        t.row(["c", "-"]);
        assert_eq!(
            t.render(),
            "GROUP     QUEUE  LAG\nbroker-a      0   12\nb            10    3\nc             -\n"
        );
    }
}
