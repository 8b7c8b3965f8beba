//! A Markdown table whose columns are padded to line up in a terminal too.

pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self { rows: vec![header.iter().map(|h| h.to_string()).collect()] }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows[0].len();
        let widths: Vec<usize> = (0..columns).map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = widths.iter().enumerate().map(|(i, w)| format!("{:<w$}", cells.get(i).map_or("", String::as_str))).collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(&self.rows[0]);
        out += &line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
        for row in &self.rows[1..] {
            out += &line(row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["a", "long header"]);
        t.row(vec!["wide cell".into(), "x".into()]);
        assert_eq!(t.render(), "| a         | long header |\n| --------- | ----------- |\n| wide cell | x           |\n");
    }
}
