//! Message templates: each returns subject, plain text and HTML, with every
//! interpolated value HTML-escaped in the HTML part.

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// Plain-text part.
    pub text: String,
    /// HTML part.
    pub html: String,
}

fn layout(app: &str, title: &str, body_html: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#222;max-width:560px;margin:0 auto;padding:24px\">\
         <h1 style=\"font-size:20px;color:#b7791f\">{a}</h1>{body_html}\
         <p style=\"color:#888;font-size:12px\">You received this email because of your {a} account.</p></body></html>",
        t = escape(title),
        a = escape(app),
    )
}

fn greeting(first_name: &str) -> String {
    if first_name.trim().is_empty() {
        "Hi,".to_string()
    } else {
        format!("Hi {},", first_name.trim())
    }
}

/// The email-verification code message.
pub fn verify_email(app: &str, first_name: &str, code: &str) -> Rendered {
    let subject = format!("Your {app} verification code: {code}");
    let hello = greeting(first_name);
    let text = format!(
        "{hello}\n\nYour {app} verification code is {code}.\nIt expires in 24 hours.\n\nIf you did not create an account, ignore this email.\n"
    );
    let html = layout(
        app,
        &subject,
        &format!(
            "<p>{}</p><p>Your verification code is</p><p style=\"font-size:28px;letter-spacing:4px;font-weight:bold\">{}</p>\
             <p>It expires in 24 hours. If you did not create an account, ignore this email.</p>",
            escape(&hello),
            escape(code)
        ),
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// The password-reset code message.
pub fn password_reset(app: &str, first_name: &str, code: &str) -> Rendered {
    let subject = format!("Your {app} password reset code");
    let hello = greeting(first_name);
    let text = format!(
        "{hello}\n\nYour password reset code is {code}.\nIt expires in 15 minutes.\n\nIf you did not ask to reset your password, ignore this email; your password is unchanged.\n"
    );
    let html = layout(
        app,
        &subject,
        &format!(
            "<p>{}</p><p>Your password reset code is</p><p style=\"font-size:28px;letter-spacing:4px;font-weight:bold\">{}</p>\
             <p>It expires in 15 minutes. If you did not ask to reset your password, ignore this email; your password is unchanged.</p>",
            escape(&hello),
            escape(code)
        ),
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// The notice sent after a password change or reset.
pub fn password_changed(app: &str, first_name: &str) -> Rendered {
    let subject = format!("Your {app} password was changed");
    let hello = greeting(first_name);
    let text = format!(
        "{hello}\n\nThe password of your {app} account was just changed. Every device was signed out, push notifications stop until you sign in again, and your calendar feed link no longer works (create a new one in the app).\nIf this was not you, reset your password now.\n"
    );
    let html = layout(
        app,
        &subject,
        &format!(
            "<p>{}</p><p>The password of your account was just changed. Every device was signed out, push notifications stop until you sign in again, and your calendar feed link no longer works (create a new one in the app).</p>\
             <p>If this was not you, reset your password now.</p>",
            escape(&hello)
        ),
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// To the member who now owns a home because its owner deleted their
/// account.
pub fn home_transferred(app: &str, first_name: &str, home: &str) -> Rendered {
    let subject = format!("You now own {home} on {app}");
    let hello = greeting(first_name);
    let text = format!(
        "{hello}\n\nThe owner of {home} deleted their {app} account. As its longest-standing member you are now its owner: its tasks, documents and members stay as they were, and you can share it, manage members or delete it.\n"
    );
    let html = layout(
        app,
        &subject,
        &format!(
            "<p>{}</p><p>The owner of <b>{}</b> deleted their account. As its longest-standing member you are now its owner: its tasks, documents and members stay as they were, and you can share it, manage members or delete it.</p>",
            escape(&hello),
            escape(home)
        ),
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// One line of a list in a scheduled email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// What (a task or document title).
    pub title: String,
    /// Where and when ("Maple House · due tomorrow, Tue 1 Dec").
    pub detail: String,
}

/// A headed list of lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Heading ("Overdue").
    pub heading: String,
    /// Its lines.
    pub lines: Vec<Line>,
}

/// A scheduled email (reminders, digest, onboarding): greeting, paragraphs,
/// headed lists, a link back to the app and an unsubscribe link.
pub fn notice(
    app: &str,
    base_url: &str,
    first_name: &str,
    subject: &str,
    paragraphs: &[String],
    sections: &[Section],
    unsubscribe_url: &str,
) -> Rendered {
    let hello = greeting(first_name);
    let mut text = format!("{hello}\n\n");
    let mut html = format!("<p>{}</p>", escape(&hello));
    for p in paragraphs {
        text.push_str(p);
        text.push_str("\n\n");
        html.push_str(&format!("<p>{}</p>", escape(p)));
    }
    for s in sections {
        text.push_str(&format!("{}\n", s.heading));
        html.push_str(&format!(
            "<h2 style=\"font-size:16px;margin:20px 0 8px\">{}</h2><ul style=\"padding-left:20px\">",
            escape(&s.heading)
        ));
        for l in &s.lines {
            text.push_str(&format!("  - {} ({})\n", l.title, l.detail));
            html.push_str(&format!(
                "<li><strong>{}</strong><br><span style=\"color:#555\">{}</span></li>",
                escape(&l.title),
                escape(&l.detail)
            ));
        }
        text.push('\n');
        html.push_str("</ul>");
    }
    let open = format!("{base_url}/");
    text.push_str(&format!(
        "Open {app}: {open}\n\nTo stop these emails: {unsubscribe_url}\n"
    ));
    html.push_str(&format!(
        "<p><a href=\"{o}\" style=\"color:#b7791f\">Open {a}</a></p>\
         <p style=\"color:#888;font-size:12px\"><a href=\"{u}\" style=\"color:#888\">Unsubscribe from these emails</a></p>",
        o = escape(&open),
        a = escape(app),
        u = escape(unsubscribe_url),
    ));
    Rendered {
        subject: subject.to_string(),
        text,
        html: layout(app, subject, &html),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_parts_escape_user_text() {
        let r = verify_email("honeyDue", "<script>x</script>", "012345");
        assert!(r.subject.contains("012345"));
        assert!(r.text.contains("Hi <script>x</script>,"));
        assert!(!r.html.contains("<script>"));
        assert!(r.html.contains("&lt;script&gt;"));
        assert!(r.html.contains("012345"));
    }

    #[test]
    fn notice_lists_sections_and_links() {
        let r = notice(
            "honeyDue",
            "https://app.test",
            "Ann",
            "2 tasks due soon",
            &["These tasks are coming up.".into()],
            &[Section {
                heading: "Due soon".into(),
                lines: vec![Line {
                    title: "Clean <gutters>".into(),
                    detail: "Maple House · due tomorrow".into(),
                }],
            }],
            "https://app.test/api/unsubscribe/t/",
        );
        assert_eq!(r.subject, "2 tasks due soon");
        assert!(r.text.starts_with("Hi Ann,"));
        assert!(r
            .text
            .contains("  - Clean <gutters> (Maple House · due tomorrow)"));
        assert!(r.text.contains("Open honeyDue: https://app.test/"));
        assert!(r
            .text
            .contains("To stop these emails: https://app.test/api/unsubscribe/t/"));
        assert!(r.html.contains("Clean &lt;gutters&gt;"));
        assert!(!r.html.contains("<gutters>"));
        assert!(r
            .html
            .contains("href=\"https://app.test/api/unsubscribe/t/\""));
        assert!(r
            .html
            .contains("<h2 style=\"font-size:16px;margin:20px 0 8px\">Due soon</h2>"));
    }

    #[test]
    fn greeting_without_name() {
        assert!(password_reset("honeyDue", " ", "111111")
            .text
            .starts_with("Hi,"));
        assert!(password_changed("honeyDue", "Ann")
            .text
            .starts_with("Hi Ann,"));
    }
}
