extends RefCounted
## Unit checks of the typing prefill ([code]typing_notifier.gd[/code]), run by
## [code]run_tests.gd[/code] on a clock set by hand: a text goes out once the player has paused
## for the debounce (the last text, one message per pause, per NPC), never twice the same, never
## blank, never after the line was said (a late [code]text_changed[/code] included), never to
## an NPC the daemon does not voice, over its limits or offline; a [LineEdit] feeds it until it
## is detached, its [code]text_submitted[/code] sends no typing; the autoload sends it before
## the [code]say[/code] and drops what is pending when the line is said.

#region Constants
const FakeDaemon := preload("fake_daemon.gd")
const Client := preload("res://addons/npc_voice/npc_voice_client.gd")
const TypingNotifier := preload("res://addons/npc_voice/typing_notifier.gd")
## The daemon's welcome: two NPCs, lines of at most 20 characters.
const WELCOME: Dictionary = {
	"type": "welcome",
	"protocol": 1,
	"npcs": [{"npc_id": "smith"}, {"npc_id": "inn"}],
	"limits": {"max_text_chars": 20, "max_message_bytes": 65536},
}
#endregion

#region Private Variables
var _check: Callable
var _now: int = 0
var _accept: bool = true
var _sent: Array[Dictionary] = []
var _signalled: Array[String] = []
#endregion


#region Engine Callbacks
## [param check]: the runner's [code]check(condition: bool, what: String)[/code].
func _init(check: Callable) -> void:
	_check = check


#endregion


#region Public Functions
## Runs the checks; [param tree] must be running.
func run(tree: SceneTree) -> void:
	_test_debounce()
	_test_a_sentence_goes_at_once()
	_test_what_is_not_sent()
	_test_line_edit(tree)
	_test_the_autoload(tree)
	await tree.process_frame


#endregion


#region Private Functions
func _new_notifier() -> TypingNotifier:
	var notifier := TypingNotifier.new(_capture)
	notifier.clock = func() -> int: return _now
	notifier.welcome = WELCOME
	notifier.typing_sent.connect(
		func(npc_id: String, text: String) -> void: _signalled.append("%s: %s" % [npc_id, text])
	)
	_sent.clear()
	_signalled.clear()
	return notifier


func _capture(frames: Array[PackedByteArray]) -> bool:
	_sent.append(JSON.parse_string(frames[0].get_string_from_utf8()))
	return _accept


## "npc: text" of every typing message sent.
func _typed() -> Array[String]:
	var typed: Array[String] = []
	for message: Dictionary in _sent:
		typed.append("%s: %s" % [message["npc_id"], message["text"]])
	return typed


func _poll_at(notifier: TypingNotifier, now_ms: int) -> void:
	_now = now_ms
	notifier.poll()


func _test_debounce() -> void:
	var notifier: TypingNotifier = _new_notifier()
	_now = 0
	notifier.notify("smith", "Wh")
	_now = 100
	notifier.notify("smith", "Where")
	_poll_at(notifier, 299)
	_check.call(_sent.is_empty() and notifier.has_pending(), "nothing before the pause ends")
	_poll_at(notifier, 300)
	_check.call(_sent == [{"type": "typing", "npc_id": "smith", "text": "Where"}], str(_sent))
	notifier.notify("smith", "Where")
	_check.call(not notifier.has_pending(), "the text sent already is not pending")
	_now = 1000
	notifier.notify("smith", "Where is")
	notifier.notify("smith", "Where")  # back to what the daemon has
	_poll_at(notifier, 2000)
	_check.call(_sent.size() == 1, "back to the text sent: nothing")
	notifier.notify("smith", "Where is")
	_now = 2100
	notifier.notify("inn", "A room")
	_poll_at(notifier, 2200)
	_poll_at(notifier, 2300)
	_check.call(_typed() == ["smith: Where", "smith: Where is", "inn: A room"], str(_typed()))
	_check.call(_signalled == _typed(), "typing_sent for each: %s" % [_signalled])
	notifier.notify("smith", "Where is the smith")
	notifier.said("smith", "Where is the smith?")
	notifier.notify("smith", "Where is the smith?")  # a late text_changed of the said line
	_poll_at(notifier, 9000)
	_check.call(_sent.size() == 3 and not notifier.has_pending(), "said: nothing more")
	notifier.debounce_ms = 0
	notifier.notify("smith", "  ")
	notifier.notify("smith", "Where is the smith?")  # a new line after a blank one
	notifier.notify("inn", "Now")
	_poll_at(notifier, 9000)
	_check.call(_typed().slice(3) == ["smith: Where is the smith?", "inn: Now"], str(_typed()))


func _test_a_sentence_goes_at_once() -> void:
	var notifier: TypingNotifier = _new_notifier()
	_now = 0
	notifier.notify("smith", "Where is the smith")
	_poll_at(notifier, 10)
	_check.call(_sent.is_empty(), "a line still being typed waits for the pause")
	notifier.notify("smith", "Where is the smith?")
	_poll_at(notifier, 10)
	_check.call(_typed() == ["smith: Where is the smith?"], "a sentence at once: %s" % [_typed()])
	notifier.notify("smith", "Where is the smith? And")
	_poll_at(notifier, 20)
	_check.call(_sent.size() == 1 and notifier.has_pending(), "typing on: the pause again")
	for text: String in ['Go away."', "Wait…", "どこ？", "Really?!  "]:
		_check.call(TypingNotifier.ends_sentence(text), "ends a sentence: %s" % text)
	for text: String in ["Go away", "?!x", "", ' " ']:
		_check.call(not TypingNotifier.ends_sentence(text), "no sentence end: %s" % text)


func _test_what_is_not_sent() -> void:
	var notifier: TypingNotifier = _new_notifier()
	notifier.debounce_ms = 0
	notifier.notify("ghost", "Boo")
	notifier.notify("smith", "x".repeat(21))
	notifier.poll()
	notifier.welcome = {}
	notifier.notify("inn", "Offline")
	notifier.poll()
	_check.call(_sent.is_empty() and not notifier.has_pending(), "unknown, too long, offline")
	notifier.welcome = WELCOME
	_accept = false
	notifier.notify("inn", "Lost")
	notifier.poll()
	_accept = true
	_check.call(_sent.size() == 1 and _signalled.is_empty(), "a failed send is not signalled")


func _test_line_edit(tree: SceneTree) -> void:
	var notifier: TypingNotifier = _new_notifier()
	var line := LineEdit.new()
	tree.root.add_child(line)
	notifier.attach(line, "smith")
	line.text_changed.emit("Hello")
	_poll_at(notifier, _now + notifier.debounce_ms)
	line.text_changed.emit("Hello th")
	line.text_submitted.emit("Hello th")
	_check.call(not notifier.has_pending(), "text_submitted drops what is pending")
	line.text_changed.emit("Hello th")  # LineEdit emits text_changed deferred: after submitting
	_check.call(not notifier.has_pending(), "the submitted text is not typing")
	notifier.attach(line, "inn")
	line.text_changed.emit("A room")
	_poll_at(notifier, _now + notifier.debounce_ms)
	notifier.detach(line)
	notifier.detach(line)
	line.text_changed.emit("Nothing")
	_check.call(not notifier.has_pending(), "detached: ignored")
	_check.call(_typed() == ["smith: Hello", "inn: A room"], "line edit: %s" % [_typed()])
	line.queue_free()


func _test_the_autoload(tree: SceneTree) -> void:
	var client: Client = FakeDaemon.new_client(tree)
	_check.call(client._typing.debounce_ms == 200, "the default debounce is 200 ms")
	FakeDaemon.says(client, WELCOME)
	client._typing.debounce_ms = 0
	client.notify_typing("smith", "Can you")
	client._typing.poll()
	client.notify_typing("smith", "Can you fix")
	client.say("smith", "Can you fix it?")
	client._typing.poll()
	var sent: Array[Dictionary] = FakeDaemon.sent(client)
	_check.call(FakeDaemon.sent_types(client) == ["typing", "say"], "sent: %s" % [sent])
	_check.call(sent[0]["text"] == "Can you" and sent[1]["text"] == "Can you fix it?", str(sent))
	client.disconnect_from_daemon()
	var offline: int = FakeDaemon.sent(client).size()
	client.notify_typing("smith", "Offline")
	client._typing.poll()
	_check.call(FakeDaemon.sent(client).size() == offline, "nothing offline")
	client.queue_free()
#endregion
