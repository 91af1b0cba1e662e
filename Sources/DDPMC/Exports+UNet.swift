// The UNet fields of ddpm_model_params <-> the engine's UNetConfig.
import CDDPM
import DDPM

func unetConfig(_ p: ddpm_model_params) throws -> NetworkConfig {
    throw DDPMError.invalidArgument("the UNet network is not built into this library yet")
}

func fillUNetParams(_ p: inout ddpm_model_params, _ config: NetworkConfig) {}
