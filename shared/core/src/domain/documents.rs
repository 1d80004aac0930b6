//! Document types: fixed by the product, not editable lookups. The schema
//! repeats the list in the `documents_doc_type_check` constraint; a test
//! below holds the two together.

/// The document types, in the order the app lists them.
pub const TYPES: [&str; 7] = [
    "warranty",
    "manual",
    "receipt",
    "insurance",
    "inspection",
    "contract",
    "other",
];

/// Whether `t` is a document type.
pub fn is_type(t: &str) -> bool {
    TYPES.contains(&t)
}

/// What to tell a client that sent an unknown type: "Use one of: warranty,
/// manual, ...".
pub fn expected() -> String {
    format!("Use one of: {}.", TYPES.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        assert!(is_type("warranty"));
        assert!(!is_type("Warranty"));
        assert_eq!(
            expected(),
            "Use one of: warranty, manual, receipt, insurance, inspection, contract, other."
        );
    }

    #[test]
    fn the_schema_accepts_exactly_these_types() {
        let mut sql = crate::domain::schema::check_in_list("documents_doc_type_check");
        let mut rust: Vec<String> = TYPES.iter().map(|t| t.to_string()).collect();
        sql.sort();
        rust.sort();
        assert_eq!(sql, rust);
    }
}
