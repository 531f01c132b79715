use serde::{Deserialize, Serialize};
use serde_json::Value;
use typed_session::{Flash, MigrationError, SessionSchema, TypedSession};

#[derive(Clone, Serialize, Deserialize, Default, PartialEq, Debug)]
enum Step {
    #[default]
    Start,
    Done,
}

fn up(data: Value) -> Result<Value, MigrationError> {
    Ok(data)
}

fn small(v: &Vec<u32>) -> Result<(), String> {
    if v.len() < 5 { Ok(()) } else { Err("too many".into()) }
}

fn whole(_: &Shop) -> Result<(), &'static str> {
    Ok(())
}

fn start() -> Step {
    Step::Start
}

#[derive(SessionSchema)]
#[session(version = 3, migrate(from = 2, with = up), migrate(from = 1, with = up), validate = whole)]
pub struct Shop {
    #[session(readonly, on_invalid = "destroy")]
    user_id: Option<u64>,
    #[session(validate = small, on_invalid = "reject")]
    cart: Vec<u32>,
    #[session(flash)]
    notices: Flash<String>,
    #[session(rename = "step", default = start)]
    r#step_state: Step,
    #[session(default)]
    visits: u64,
    #[session(skip)]
    cache: Option<String>,
}

fn main() {
    let s = TypedSession::detached(Shop {
        user_id: None,
        cart: vec![],
        notices: Flash::default(),
        step_state: Step::Start,
        visits: 0,
        cache: None,
    });
    s.set_cart(vec![1]).unwrap();
    s.notices().push("hi".into());
    let _: Step = s.step_state();
    let _: Option<u64> = s.user_id();
    let _: u64 = s.take_visits();
    let _ = s.view().cart();
}
