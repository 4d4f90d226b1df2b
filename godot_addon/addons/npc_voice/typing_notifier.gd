extends RefCounted
## Tells the daemon what the player is typing to an NPC ([code]typing[/code], PROTOCOL.md 3.1),
## debounced: an NPC's line goes out once the player has paused for [member debounce_ms] (a
## trailing debounce: the text typed so far, at most one message per pause), or at once when it
## ends a sentence. The daemon evaluates the line's complete words in the background, and
## starts the reply to a finished sentence, so that the [code]say[/code] that follows starts
## sooner. Nothing is sent for a text already sent (or said), nor for a blank
## one; once a line is said, what is still pending of it is dropped, and a late
## [code]text_changed[/code] carrying the said text is ignored.
##
## Fed by [method notify], or by the [LineEdit]s given to [method attach] (its
## [code]text_changed[/code], and [code]text_submitted[/code], which sends no typing). The
## autoload calls [method poll] every frame, [method said] for every [code]say[/code], and keeps
## [member welcome] up to date.

#region Signals
## A [code]typing[/code] message with [param text] went out for [param npc_id].
signal typing_sent(npc_id: String, text: String)
#endregion

#region Constants
const LocalChecks := preload("local_checks.gd")
## Meta of an attached [LineEdit]: [code][npc_id, on_text_changed, on_text_submitted][/code].
const META: StringName = &"npc_voice_typing"
## Marks that end a sentence, and closing marks that may follow them ([method ends_sentence]).
const SENTENCE_MARKS := ".!?…。！？"
const CLOSING_MARKS := "\"')]»”’」』"
#endregion

#region Public Variables
## Pause after the last change before the text goes out, in milliseconds (0: on the next
## [method poll]); from [code]npc_voice/typing/debounce_ms[/code].
var debounce_ms: int = 200
## The clock, in milliseconds (tests replace it).
var clock: Callable = Time.get_ticks_msec
## The daemon's [code]welcome[/code] (its NPCs and limits); empty while not connected: nothing
## is sent then.
var welcome: Dictionary = {}
#endregion

#region Private Variables
var _send: Callable
var _pending: Dictionary = {}
var _last: Dictionary = {}
#endregion


#region Engine Callbacks
## [param send] is the connection's [code]send_message(frames) -> bool[/code].
func _init(send: Callable) -> void:
	_send = send


#endregion


#region Public Functions
## The line being typed to [param npc_id] is now [param text]: it goes out [member debounce_ms]
## after the last change, unless it changes again, is said, or was the last text sent.
func notify(npc_id: String, text: String) -> void:
	if text.strip_edges().is_empty():
		_pending.erase(npc_id)
		_last.erase(npc_id)  # a new line begins
	elif _last.get(npc_id) == text:
		_pending.erase(npc_id)  # back to what the daemon has
	else:
		# A line that ends a sentence is likely the one the player will send: it goes out at
		# once, and the daemon starts its reply before Enter (held back until the say).
		var wait_ms: int = 0 if ends_sentence(text) else debounce_ms
		_pending[npc_id] = [text, int(clock.call()) + wait_ms]


## Sends every text whose pause is over. Call once per frame.
func poll() -> void:
	if _pending.is_empty():
		return
	var now: int = clock.call()
	for npc_id: String in _pending.keys():
		var entry: Array = _pending[npc_id]
		if now >= int(entry[1]):
			_pending.erase(npc_id)
			_last[npc_id] = entry[0]
			if _send_typing(npc_id, entry[0]):
				typing_sent.emit(npc_id, entry[0])


## True when [param text] ends with a sentence mark ([code]. ? ! …[/code] or CJK's), closing
## quotes allowed after it. The daemon applies its own rules (abbreviations) on top.
static func ends_sentence(text: String) -> bool:
	var trimmed: String = text.strip_edges()
	while not trimmed.is_empty() and CLOSING_MARKS.contains(trimmed[-1]):
		trimmed = trimmed.left(-1)
	return not trimmed.is_empty() and SENTENCE_MARKS.contains(trimmed[-1])


## [param text] was said to [param npc_id]: nothing more of that line goes out.
func said(npc_id: String, text: String) -> void:
	_pending.erase(npc_id)
	_last[npc_id] = text


## True while a text waits for its pause to end.
func has_pending() -> bool:
	return not _pending.is_empty()


## Forgets everything (the connection was lost: the daemon's prefills are gone too).
func clear() -> void:
	welcome = {}
	_pending.clear()
	_last.clear()


## Sends what is typed into [param line_edit] as the line to [param npc_id] (again: another
## NPC). Its [code]text_submitted[/code] drops what is pending: the game says the line itself.
func attach(line_edit: LineEdit, npc_id: String) -> void:
	if line_edit.has_meta(META):
		var attached: Array = line_edit.get_meta(META)
		if attached[0] != npc_id:
			_pending.erase(attached[0])
		attached[0] = npc_id
		line_edit.set_meta(META, attached)
		return
	var on_changed: Callable = _on_text_changed.bind(line_edit)
	var on_submitted: Callable = _on_text_submitted.bind(line_edit)
	line_edit.set_meta(META, [npc_id, on_changed, on_submitted])
	line_edit.text_changed.connect(on_changed)
	line_edit.text_submitted.connect(on_submitted)


## Stops watching [param line_edit]; what it left pending is dropped.
func detach(line_edit: LineEdit) -> void:
	if not line_edit.has_meta(META):
		return
	var attached: Array = line_edit.get_meta(META)
	line_edit.remove_meta(META)
	_pending.erase(attached[0])
	line_edit.text_changed.disconnect(attached[1])
	line_edit.text_submitted.disconnect(attached[2])


#endregion


#region Private Functions
## Sends [param text] as typed to [param npc_id]; false when it cannot go: not connected, an NPC
## the daemon does not voice, over its limits (the [code]say[/code] will tell).
func _send_typing(npc_id: String, text: String) -> bool:
	var npcs: Variant = welcome.get("npcs")
	if not npcs is Array or not npcs.any(func(npc: Variant) -> bool: return _is_npc(npc, npc_id)):
		return false
	var message: Dictionary = {"type": "typing", "npc_id": npc_id, "text": text}
	var frames: Array[PackedByteArray] = [JSON.stringify(message).to_utf8_buffer()]
	if not LocalChecks.limit_problem(welcome, text, frames[0].size()).is_empty():
		return false
	return _send.call(frames)


static func _is_npc(npc: Variant, npc_id: String) -> bool:
	return npc is Dictionary and npc.get("npc_id") == npc_id


#endregion


#region Signal Handlers
func _on_text_changed(text: String, line_edit: LineEdit) -> void:
	if line_edit.has_meta(META):
		notify(line_edit.get_meta(META)[0], text)


func _on_text_submitted(text: String, line_edit: LineEdit) -> void:
	if line_edit.has_meta(META):
		said(line_edit.get_meta(META)[0], text)
#endregion
