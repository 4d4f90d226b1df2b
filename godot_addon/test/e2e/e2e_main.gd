extends Node
## Runs one end-to-end scenario of the addon against a real daemon, headless:
## [code]godot --headless --path godot_addon res://test/e2e/e2e.tscn -- --scenario=NAME
## --port=PORT [--control=DIR] [--wav=PATH][/code]. The scenario is
## [code]res://test/e2e/NAME.gd[/code] (a [code]scenario.gd[/code]); it prints its events as
## JSON lines and quits with 0 when it ran to its end. tests/test_godot_*.py start the daemon,
## run this and judge the events.

#region Constants
const Scenario := preload("scenario.gd")
## A scenario still running after this long is stopped (exit code 2): it hangs.
const WATCHDOG_S: float = 230.0
#endregion


#region Engine Callbacks
func _ready() -> void:
	var args: Dictionary = Scenario.parse_args(OS.get_cmdline_user_args())
	var path: String = "res://test/e2e/%s.gd" % args.get("scenario", "")
	if not ResourceLoader.exists(path):
		push_error("no scenario " + path)
		get_tree().quit(3)
		return
	var script: GDScript = load(path)
	if script == null or not script.can_instantiate():
		push_error("the scenario %s does not compile" % path)
		get_tree().quit(3)
		return
	get_tree().create_timer(WATCHDOG_S).timeout.connect(_on_watchdog_timeout)
	var scenario: Scenario = script.new()
	scenario.name = "Scenario"
	scenario.args = args
	add_child(scenario)


#endregion


#region Signal Handlers
func _on_watchdog_timeout() -> void:
	push_error("the scenario still runs after %.0f s" % WATCHDOG_S)
	get_tree().quit(2)
#endregion
