from identity_hub.cli import main

main(prog_name="identity-hub")
