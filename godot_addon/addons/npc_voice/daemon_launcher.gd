extends RefCounted
## Starts the npc-voice daemon with the game and kills it on exit (the
## [code]npc_voice/daemon/*[/code] settings). Desktop platforms only: mobile and web exports
## cannot start processes.

#region Constants
const Settings := preload("npc_voice_settings.gd")
#endregion

#region Private Variables
var _pid: int = -1
#endregion


#region Public Functions
## Starts [code]npc_voice/daemon/command[/code] with [code]npc_voice/daemon/arguments[/code],
## adding [code]--port[/code] [param port] and [code]--token[/code] [param token] when missing.
## Returns "" on success (or when it already runs), else what went wrong.
func launch(port: int, token: String) -> String:
	if is_running():
		return ""
	var command: String = Settings.get_value(Settings.COMMAND)
	if command.begins_with("res://") or command.begins_with("user://"):
		command = ProjectSettings.globalize_path(command)
	var arguments := PackedStringArray(Settings.get_value(Settings.ARGUMENTS))
	if not arguments.has("--port"):
		arguments.append_array(PackedStringArray(["--port", str(port)]))
	if token != "" and not arguments.has("--token"):
		arguments.append_array(PackedStringArray(["--token", token]))
	_pid = OS.create_process(command, arguments)
	if _pid <= 0:
		_pid = -1
		return "could not start %s %s" % [command, " ".join(arguments)]
	return ""


## True while the launched process runs.
func is_running() -> bool:
	return _pid > 0 and OS.is_process_running(_pid)


## True when a launched process has exited by itself since the last call.
func exited() -> bool:
	if _pid > 0 and not OS.is_process_running(_pid):
		_pid = -1
		return true
	return false


## Kills the launched process, if it runs.
func stop() -> void:
	if is_running():
		OS.kill(_pid)
	_pid = -1
#endregion
