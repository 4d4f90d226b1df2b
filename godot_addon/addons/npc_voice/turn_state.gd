extends RefCounted
## Client-side record of one turn, kept by the [code]NpcVoice[/code] autoload
## ([code]turn_table.gd[/code]) from its [code]say[/code] (or, for a voice turn, its
## [code]transcript[/code]) until [signal speech_finished]; dropped whole afterwards.

#region Constants
const VoiceOutput := preload("voice_output.gd")
## The values of the [code]priority[/code] option of [code]say[/code] and
## [code]start_listening[/code] (PROTOCOL.md 3.7): "ambient" (barks, background chatter: never
## delays the others), "normal" (the default), "high" (a line the player waits for).
const PRIORITIES: Array = ["ambient", "normal", "high"]
#endregion

#region Public Variables
## Turn id, increasing per connection: chosen by the client for a [code]say[/code], by the
## daemon for a voice turn.
var turn_id: int = -1
## NPC addressed.
var npc_id: String = ""
## Where the audio plays; null when no player could be found.
var output: VoiceOutput = null
## Audio to hold before starting playback, in milliseconds.
var prebuffer_ms: int = 0
## [method Time.get_ticks_usec] when the [code]say[/code] left, or, for a voice turn, when the
## block holding the end of the player's speech was sent.
var sent_usec: int = 0
## When the first block arrived (-1 = none yet).
var first_block_usec: int = -1
## When playback started (-1 = not yet).
var playback_usec: int = -1
## Next expected block [code]seq[/code]; gaps are counted in [member lost_blocks].
var next_seq: int = 0
## Blocks skipped in the [code]seq[/code] numbering (0 on a healthy connection).
var lost_blocks: int = 0
## Terminal event received: "", "done", "cancelled", "error" or "disconnected".
var terminal: String = ""
## The daemon's [code]timings[/code] from the terminal event.
var timings: Dictionary = {}
## Playback was stopped on this side (cancel, barge-in, the player was replaced or freed).
var stopped: bool = false
## Playback finished normally (everything was heard).
var played_out: bool = false
## A [code]cancel[/code] was sent for this turn.
var cancel_sent: bool = false
## Client-side underruns (see [code]voice_output.gd[/code]).
var underruns: int = 0
## Milliseconds of the reply the mixer played (consumed from the generator).
var played_ms: float = 0.0
## Subtitles received whose chunk has not started playing yet, by [code]chunk_index[/code].
var pending_subtitles: Dictionary = {}
## Highest [code]chunk_index[/code] whose first sample was played (-1 = none yet).
var started_chunk: int = -1
## The turn waits for its moment to play (a scene line, see [code]scene_table.gd[/code]): it has
## no player yet and keeps its blocks in [member held_blocks] (and a "done" in
## [member terminal]) until [code]turn_table.gd[/code]'s [code]start_deferred[/code].
var deferred: bool = false
## Blocks received while [member deferred]: [code][pcm, sample_rate_hz, chunk_index][/code] each.
var held_blocks: Array[Array] = []
## [code]timing[/code] messages received while [member deferred], in order.
var held_timing: Array[Dictionary] = []
## The options of its [code]say[/code] ([code]player[/code], [code]prebuffer_ms[/code]...).
var options: Dictionary = {}
## The daemon cut the turn ([code]scene_cut[/code]): nothing after chunk
## [member cut_after_chunk] plays (-1: nothing more at all).
var cut: bool = false
## See [member cut].
var cut_after_chunk: int = -1
#endregion


#region Public Functions
## Why [code]options.priority[/code] is not one of [constant PRIORITIES], or "" (also when absent).
static func priority_problem(options: Dictionary) -> String:
	if not options.has("priority") or str(options["priority"]) in PRIORITIES:
		return ""
	return "priority must be ambient, normal or high, not %s" % [options["priority"]]


## The [code]priority[/code] field to send for [param options] (valid ones), or "" to send none:
## "normal" is the daemon's default, so it is left out and daemons older than priorities work.
static func wire_priority(options: Dictionary) -> String:
	var priority: String = str(options.get("priority", "normal"))
	return "" if priority == "normal" else priority


## How the turn ended, for [signal speech_finished]: "done" (heard to the end), "cancelled",
## "error" or "disconnected".
func outcome() -> String:
	if terminal == "done":
		return "cancelled" if stopped else "done"
	return terminal


## The daemon's timings plus the client's own, in milliseconds from [member sent_usec]:
## [code]client_ttfa_ms[/code] (first block received, IPC both ways included) and
## [code]client_time_to_playback_ms[/code] (playback started, pre-buffer included); -1 when it
## did not happen. Also [code]lost_blocks[/code] and [code]client_played_ms[/code] (audio the
## mixer played: all of it for a turn heard to the end, less when it was stopped).
func client_timings() -> Dictionary:
	var result: Dictionary = timings.duplicate()
	result["client_ttfa_ms"] = _since_sent_ms(first_block_usec)
	result["client_time_to_playback_ms"] = _since_sent_ms(playback_usec)
	result["lost_blocks"] = lost_blocks
	result["client_played_ms"] = played_ms
	return result


#endregion


#region Private Functions
func _since_sent_ms(usec: int) -> float:
	return (usec - sent_usec) / 1000.0 if usec >= 0 else -1.0
#endregion
