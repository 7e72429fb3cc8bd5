# Writes the ckpt man page and bash completion that the built CLI generates
# from its own definition (client/cli/shell_docs.h). Run by the build:
#   cmake -DCKPT=path/to/ckpt -DMAN=ckpt.1 -DBASH=ckpt.bash -P this file
execute_process(COMMAND ${CKPT} man OUTPUT_FILE ${MAN}
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CKPT} completion bash OUTPUT_FILE ${BASH}
                COMMAND_ERROR_IS_FATAL ANY)
