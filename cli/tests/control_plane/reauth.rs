//! Re-authentication after termination (issue 15): an admin terminates bob
//! while his browser still holds the IdP's sign-in session. His next login
//! must not ride on it: the control plane refuses a session for the old
//! sign-in, the edge sends the browser back with `prompt=login` and
//! `max_age=0`, the real IdP (`cli/tests/idp`, npm `oidc-provider`) shows
//! its login form, and only the new sign-in gets a session.

use serde_json::json;

use crate::edge_login::World;
use crate::idp::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_termination_the_next_login_is_a_new_sign_in_at_the_idp() {
    let world = World::start("login-reauth").await;
    let bob = Browser::resolving(&["wiki.corp.example"]);
    assert_eq!(world.log_in(&bob, "bob", "wiki", "/hello").await.status, 200, "bob signs in once");
    // `auth_time` has whole seconds, and a sign-in in the very second of a
    // termination is given the benefit of the doubt: terminate in a later one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let terminate = json!({ "email": "bob@corp.example", "reason": "laptop stolen" });
    let (status, answer) = world.plane.api_post("/users/terminate?wait=true", &terminate).await.unwrap();
    assert_eq!(status, 200, "{answer}");

    // The IdP's session answers at once, the control plane refuses it, and
    // the browser is sent to a login the IdP must prompt for. (Straight to
    // the login: within 10 s of a login the edge answers a refused session
    // with a page, not with another login.)
    let back = bob.follow(&world.url("wiki", "/.portcullis/login?rd=/hello")).await;
    let trail: Vec<String> = back.hops.iter().map(ToString::to_string).collect();
    let trail = trail.join("\n");
    assert!(trail.contains("/.portcullis/login?rd=/hello&max_age=0"), "sent round once more:\n{trail}");
    let forced = back.hops.iter().find(|hop| hop.url.contains("prompt=login")).expect("an authorization with prompt");
    assert!(forced.url.contains("max_age=0"), "{forced}");
    assert_eq!(back.status, 200, "the IdP's login form:\n{trail}");
    assert!(back.url.starts_with(&world.idp.issuer()), "stopped at the IdP, not at the app:\n{trail}");
    assert_eq!(world.active_sessions_of("bob@corp.example").await, 0, "no session from the old sign-in");

    // Only the new sign-in (the form filled in again) gets a session.
    let callback = bob.login_at_idp(&back.url, "bob", &world.url("wiki", "/.portcullis/callback")).await;
    let done = bob.follow(&callback).await;
    assert_eq!((done.status, done.url.as_str()), (200, world.url("wiki", "/hello").as_str()));
    assert_eq!(world.active_sessions_of("bob@corp.example").await, 1);
}
