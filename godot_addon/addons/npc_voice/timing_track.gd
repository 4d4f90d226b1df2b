extends RefCounted
## The lip-sync timeline of the turn a voice player plays: the words, visemes and mouth-open
## values of the daemon's [code]timing[/code] messages (PROTOCOL.md 3.9), in sample order, fired
## by [code]voice_output.gd[/code] when the mixer has consumed their sample.
##
## Every offset counts samples of the turn's audio at the blocks' rate from 0 at the turn's first
## sample: the clock of [code]voice_output.gd[/code]'s consumed frames (frames pushed into the
## [AudioStreamGenerator] minus those it still holds), so an event at offset n fires once n
## samples of the turn were played. A [code]timing[/code] message arrives ahead of its audio (by
## up to a whole chunk, and more while the pre-buffer fills): its events wait here.

#region Signals
## Word [param text] (as written, punctuation included) begins in the audio just played.
signal word_started(turn_id: int, text: String)
## The mouth takes the shape [param viseme] (one of [constant VISEMES]) as far as
## [param weight] (0..1); it holds until the next one.
signal viseme_changed(turn_id: int, viseme: String, weight: float)
## Voices without phoneme timing (hibari, XTTS): the mouth opens [param open] (0 closed .. 1
## wide) for the block just reached, from that block's loudness.
signal mouth_open_changed(turn_id: int, open: float)
#endregion

#region Enums
## Event kinds.
enum Kind { WORD = 0, VISEME = 1, MOUTH = 2 }
#endregion

#region Constants
## The 15 visemes of the daemon's [code]timing[/code] messages (Meta's OVRLipSync set), in
## their usual order.
const VISEMES: PackedStringArray = [
	"sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou"
]
#endregion

#region Private Variables
# Pending events from index _next on, sorted by offset: [offset, chunk_index, kind, text, value].
var _events: Array[Array] = []
var _next: int = 0
#endregion


#region Public Functions
## Adds the events of a [code]timing[/code] message (a parsed JSON Dictionary). Entries with a
## missing or mistyped field are skipped; returns how many events were added.
func add_message(message: Dictionary) -> int:
	var chunk: int = _int(message, "chunk_index")
	var added: Array[Array] = []
	for word: Variant in _list(message, "words"):
		if word is Dictionary and word.get("text") is String and _int(word, "start_sample") >= 0:
			added.append([_int(word, "start_sample"), chunk, Kind.WORD, word["text"], 1.0])
	for viseme: Variant in _list(message, "visemes"):
		if viseme is Dictionary and str(viseme.get("viseme", "")) in VISEMES:
			var weight: float = clampf(_float(viseme, "weight", 1.0), 0.0, 1.0)
			var at: int = _int(viseme, "start_sample")
			if at >= 0:
				added.append([at, chunk, Kind.VISEME, str(viseme["viseme"]), weight])
	for mouth: Variant in _list(message, "mouth"):
		if mouth is Dictionary and _int(mouth, "start_sample") >= 0:
			var open: float = clampf(_float(mouth, "open", 0.0), 0.0, 1.0)
			added.append([_int(mouth, "start_sample"), chunk, Kind.MOUTH, "", open])
	for event: Array in added:
		_insert(event)
	return added.size()


## Offset of the next event to fire, or -1 when none is pending.
func next_offset() -> int:
	return _events[_next][0] if _next < _events.size() else -1


## Number of events still to fire.
func pending() -> int:
	return _events.size() - _next


## Emits the next pending event (see [method next_offset]) for [param turn_id].
func fire_next(turn_id: int) -> void:
	if _next >= _events.size():
		return
	var event: Array = _events[_next]
	_next += 1
	if _next >= _events.size():
		_events.clear()
		_next = 0
	match event[2]:
		Kind.WORD:
			word_started.emit(turn_id, event[3])
		Kind.VISEME:
			viseme_changed.emit(turn_id, event[3], event[4])
		Kind.MOUTH:
			mouth_open_changed.emit(turn_id, event[4])


## Emits, in order, every pending event whose offset is at most [param played] samples.
func fire_reached(turn_id: int, played: int) -> void:
	while next_offset() >= 0 and next_offset() <= played:
		fire_next(turn_id)


## Drops the pending events of chunks after [param chunk_index] (a [code]scene_cut[/code]: their
## audio will not play).
func drop_chunks_after(chunk_index: int) -> void:
	var kept: Array[Array] = []
	for index: int in range(_next, _events.size()):
		if _events[index][1] <= chunk_index:
			kept.append(_events[index])
	_events = kept
	_next = 0


## Drops every pending event.
func clear() -> void:
	_events.clear()
	_next = 0


#endregion


#region Private Functions
## Inserts [param event] after every pending event at or before its offset (stable: words before
## the visemes of the same sample, earlier messages before later ones).
func _insert(event: Array) -> void:
	var index: int = _events.size()
	while index > _next and _events[index - 1][0] > event[0]:
		index -= 1
	_events.insert(index, event)


static func _list(message: Dictionary, key: String) -> Array:
	var value: Variant = message.get(key)
	return value if value is Array else []


## [param key] of a JSON object as an int (JSON numbers are floats), or -1.
static func _int(item: Dictionary, key: String) -> int:
	var value: Variant = item.get(key)
	return int(value) if value is float or value is int else -1


static func _float(item: Dictionary, key: String, default: float) -> float:
	var value: Variant = item.get(key)
	return float(value) if value is float or value is int else default
#endregion
